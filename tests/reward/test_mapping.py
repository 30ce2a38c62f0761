"""The mapping function against hand-computed numbers, and its properties."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from moslim.reward.mapping import METHODS, RunningStats, map_rewards

# Two heads: head 0 has 3 classes, head 1 has 2 (padded with a 0 to c = 3).
PROBS = torch.tensor([[[0.2, 0.5, 0.3], [0.9, 0.1, 0.0]]], dtype=torch.float64)  # (1, 2, 3)
NUM_CLASSES = torch.tensor([3, 2])
BOTH = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
FIRST = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
TARGETS = torch.tensor([[1, 0]])
# head 0: mean 1/3, population std sqrt(((0.2-1/3)^2 + (0.5-1/3)^2 + (0.3-1/3)^2) / 3) = 0.124722
Z0 = (0.5 - 1 / 3) / 0.12472191289246472  # = 1.336306
# head 1 (valid classes only): mean 0.5, std 0.4, z = (0.9 - 0.5) / 0.4 = 1
Z1 = 1.0


def test_zscore_matches_hand_computed_value():
    assert map_rewards(PROBS, TARGETS, BOTH, NUM_CLASSES).item() == pytest.approx((Z0 + Z1) / 2)


def test_zscore_divides_by_all_heads_by_default_and_by_named_on_request():
    assert map_rewards(PROBS, TARGETS, FIRST, NUM_CLASSES).item() == pytest.approx(Z0 / 2)
    assert map_rewards(PROBS, TARGETS, FIRST, NUM_CLASSES, normalize="named").item() == pytest.approx(Z0)


def test_padding_class_is_ignored():
    # Putting junk in the padded slot of head 1 must not change anything (it is not a valid class).
    padded = PROBS.clone()
    padded[0, 1, 2] = 0.7
    assert map_rewards(padded, TARGETS, BOTH, NUM_CLASSES).item() == pytest.approx((Z0 + Z1) / 2)


def test_class_zscore_of_a_two_level_head_is_the_sign_of_its_margin():
    """With class statistics a two-level head gives +-1 (mean 0.5, std |p - 0.5|): the reward says which side of
    0.5 the target's probability is on, not how far. Batch statistics keep the distance."""
    p1 = torch.tensor([0.51, 0.6, 0.97, 0.49, 0.2], dtype=torch.float64)
    probs = torch.stack([1 - p1, p1], -1)[:, None, :]  # (5, 1, 2)
    targets, mask, two = torch.ones(5, 1, dtype=torch.long), torch.ones(5, 1, dtype=torch.float64), torch.tensor([2])
    assert map_rewards(probs, targets, mask, two).tolist() == pytest.approx([1, 1, 1, -1, -1])
    graded = map_rewards(probs, targets, mask, two, stats="batch")
    assert graded.argsort().tolist() == [4, 3, 0, 1, 2]


def test_expected_level_matches_hand_computed_value():
    # head 0: E = 0*0.2 + 1*0.5 + 2*0.3 = 1.1, |1.1 - 1| / 2 = 0.05; head 1: E = 0.1, |0.1 - 0| / 1 = 0.1
    r = map_rewards(PROBS, TARGETS, BOTH, NUM_CLASSES, method="expected_level")
    assert r.item() == pytest.approx(-(0.05 + 0.1) / 2)


def test_target_logprob_matches_hand_computed_value():
    r = map_rewards(PROBS, TARGETS, BOTH, NUM_CLASSES, method="target_logprob")
    assert r.item() == pytest.approx((math.log(0.5) + math.log(0.9)) / 2)


def test_batch_statistics_standardise_across_rows():
    probs = torch.tensor([[[0.2, 0.5, 0.3]], [[0.6, 0.2, 0.2]]], dtype=torch.float64)  # (2, 1, 3)
    targets = torch.tensor([[1], [1]])
    mask = torch.ones(2, 1, dtype=torch.float64)
    # p[target] = [0.5, 0.2]: mean 0.35, std 0.15 -> z = [+1, -1]
    r = map_rewards(probs, targets, mask, torch.tensor([3]), stats="batch")
    assert r.tolist() == pytest.approx([1.0, -1.0])


def test_running_statistics_accumulate_over_batches():
    running = RunningStats(1)
    nc = torch.tensor([3])
    first = torch.tensor([[[0.2, 0.5, 0.3]], [[0.6, 0.2, 0.2]]], dtype=torch.float64)
    map_rewards(first, torch.tensor([[1], [1]]), torch.ones(2, 1), nc, stats="running", running=running)
    second = torch.tensor([[[0.1, 0.8, 0.1]]], dtype=torch.float64)
    r = map_rewards(second, torch.tensor([[1]]), torch.ones(1, 1), nc, stats="running", running=running)
    # values seen: 0.5, 0.2, 0.8 -> mean 0.5, std sqrt(0.06); z(0.8) = 0.3 / sqrt(0.06)
    assert r.item() == pytest.approx(0.3 / math.sqrt(0.06))
    assert running.count.item() == 3
    copy = RunningStats(1)
    copy.load_state_dict(running.state_dict())
    assert copy.mean.item() == pytest.approx(0.5)


def test_running_statistics_need_a_carrier():
    with pytest.raises(ValueError, match="RunningStats"):
        map_rewards(PROBS, TARGETS, BOTH, NUM_CLASSES, stats="running")


def test_uniform_probabilities_give_zero_not_nan():
    probs = torch.full((4, 2, 3), 1 / 3, dtype=torch.float64)
    probs[:, 1] = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    for stats in ("class", "batch"):
        r = map_rewards(probs, torch.zeros(4, 2, dtype=torch.long), torch.ones(4, 2), NUM_CLASSES, stats=stats)
        assert torch.isfinite(r).all() and r.abs().max() == 0


@pytest.mark.parametrize("method", list(METHODS))
def test_a_large_batch_maps_row_by_row_like_single_rows(method):
    """Vectorised over the batch: each row's reward equals the reward of that row mapped alone (class stats)."""
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(512, 3, 5), -1)
    targets, mask = torch.randint(0, 5, (512, 3)), (torch.rand(512, 3) > 0.3).float()
    batch = map_rewards(probs, targets, mask, torch.tensor([5, 5, 5]), method=method)
    rows = torch.cat([map_rewards(probs[i:i + 1], targets[i:i + 1], mask[i:i + 1], torch.tensor([5, 5, 5]),
                                  method=method) for i in range(0, 512, 37)])
    assert batch.shape == (512,)
    torch.testing.assert_close(batch[::37], rows)


def test_custom_callable_and_unknown_name():
    r = map_rewards(PROBS, TARGETS, BOTH, NUM_CLASSES, method=lambda p, t, m, n: p[:, 0, 0] * 10)
    assert r.item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="valid: zscore, expected_level, target_logprob"):
        map_rewards(PROBS, TARGETS, BOTH, NUM_CLASSES, method="cosine")


def test_shape_and_range_errors_say_what_was_expected():
    with pytest.raises(ValueError, match=r"must be \(1, 2\)"):
        map_rewards(PROBS, torch.zeros(1, 3, dtype=torch.long), BOTH, NUM_CLASSES)
    with pytest.raises(ValueError, match="out of range"):
        map_rewards(PROBS, torch.tensor([[1, 2]]), BOTH, NUM_CLASSES)


def test_zscore_can_drop_when_mass_moves_from_one_low_class():
    """Documented property of the paper's class-statistics form (not a bug in the maths here).

    p = [0.6333, 0.1333, 0.2333], target 0: z = 0.3 / 0.2160 = 1.389. Moving 0.05 from class 1 onto the
    target gives [0.6833, 0.0833, 0.2333]: z = 0.35 / 0.2550 = 1.373 -- lower, because the std grows faster
    than the target's deviation. Mixing towards the one-hot target (tested below) never lowers it.
    """
    before = torch.tensor([[[0.6 + 1 / 30, 0.1 + 1 / 30, 0.2 + 1 / 30]]], dtype=torch.float64)
    after = before + torch.tensor([[[0.05, -0.05, 0.0]]], dtype=torch.float64)
    t, m, n = torch.tensor([[0]]), torch.ones(1, 1), torch.tensor([3])
    assert map_rewards(after, t, m, n).item() < map_rewards(before, t, m, n).item()


@st.composite
def batches(draw):
    b, k = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    num_levels = torch.tensor(draw(st.lists(st.integers(2, 5), min_size=k, max_size=k)))
    c = int(num_levels.max())
    raw = torch.tensor(draw(st.lists(st.floats(0.01, 5.0), min_size=b * k * c, max_size=b * k * c)),
                       dtype=torch.float64).view(b, k, c)
    valid = torch.arange(c)[None, :] < num_levels[:, None]
    probs = raw * valid
    probs = probs / probs.sum(-1, keepdim=True)
    targets = torch.stack([torch.tensor(draw(st.lists(st.integers(0, int(n) - 1), min_size=b, max_size=b)))
                           for n in num_levels], dim=1)
    mask = torch.tensor(draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=b * k, max_size=b * k)),
                        dtype=torch.float64).view(b, k)
    return probs, targets, mask, num_levels


@settings(max_examples=150, deadline=None)
@given(data=batches(), lam=st.floats(0.0, 1.0), method=st.sampled_from(list(METHODS)))
def test_mixing_mass_onto_target_never_lowers_reward(data, lam, method):
    probs, targets, mask, nc = data
    onehot = torch.nn.functional.one_hot(targets, probs.shape[-1]).to(probs.dtype)
    moved = (1 - lam) * probs + lam * onehot
    before = map_rewards(probs, targets, mask, nc, method=method)
    after = map_rewards(moved, targets, mask, nc, method=method)
    assert (after >= before - 1e-9).all()


@settings(max_examples=150, deadline=None)
@given(data=batches(), method=st.sampled_from(list(METHODS)), seed=st.integers(0, 1000))
def test_masked_head_cannot_change_reward(data, method, seed):
    probs, targets, mask, nc = data
    mask[:, 0] = 0
    g = torch.Generator().manual_seed(seed)
    other = probs.clone()
    noise = torch.rand(probs.shape[0], probs.shape[-1], generator=g, dtype=torch.float64)
    noise = noise * (torch.arange(probs.shape[-1]) < nc[0])
    other[:, 0] = noise / noise.sum(-1, keepdim=True)
    new_targets = targets.clone()
    new_targets[:, 0] = (targets[:, 0] + 1) % nc[0]
    a = map_rewards(probs, targets, mask, nc, method=method)
    b = map_rewards(other, new_targets, mask, nc, method=method)
    assert torch.allclose(a, b)


@settings(max_examples=100, deadline=None)
@given(data=batches(), method=st.sampled_from(list(METHODS)), stats=st.sampled_from(["class", "batch"]))
def test_all_masked_gives_zero(data, method, stats):
    probs, targets, _, nc = data
    opts = {"stats": stats} if method == "zscore" else {}
    r = map_rewards(probs, targets, torch.zeros(targets.shape, dtype=torch.float64), nc, method=method, **opts)
    assert torch.equal(r, torch.zeros_like(r))


@settings(max_examples=100, deadline=None)
@given(data=batches(), method=st.sampled_from(list(METHODS)))
def test_reward_is_highest_at_the_target_for_one_hot_probs(data, method):
    """A head that is certain of level j scores best when the target is j."""
    _, targets, _, nc = data
    k, c = len(nc), int(nc.max())
    mask = torch.zeros(1, k, dtype=torch.float64)
    mask[0, 0] = 1
    level = int(targets[0, 0])
    probs = torch.zeros(1, k, c, dtype=torch.float64)
    probs[0, :, 0] = 1
    probs[0, 0] = 0
    probs[0, 0, level] = 1
    rewards = [map_rewards(probs, torch.tensor([[t] + [0] * (k - 1)]), mask, nc, method=method).item()
               for t in range(int(nc[0]))]
    assert max(rewards) == rewards[level]
