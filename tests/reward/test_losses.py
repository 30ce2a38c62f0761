"""The masked multi-head loss, checked against hand-computed numbers."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from moslim.reward.losses import IGNORE, balanced_class_weights, per_head_losses, reward_loss

NUM_CLASSES = torch.tensor([3, 2])
NEG = float("-inf")


def test_cross_entropy_matches_hand_computed_values():
    logits = torch.tensor([[[0.0, 0.0, 0.0], [0.0, math.log(3), NEG]]])  # (b=1, k=2, c=3)
    labels = torch.tensor([[1, 1]])
    losses, counts = per_head_losses(logits, labels, NUM_CLASSES)
    # expected: head 0 uniform over 3 -> log 3; head 1 p(1) = 3/4 -> -log(3/4)
    torch.testing.assert_close(losses, torch.tensor([math.log(3), -math.log(0.75)]))
    assert counts.tolist() == [1, 1]


def test_unlabelled_head_adds_nothing_to_the_loss():
    logits = torch.tensor([[[1.0, 2.0, 3.0], [0.5, 0.1, NEG]], [[0.0, 0.0, 0.0], [2.0, 0.0, NEG]]])
    labels = torch.tensor([[IGNORE, 0], [2, IGNORE]])
    losses, counts = per_head_losses(logits, labels, NUM_CLASSES)
    expected0 = -torch.log_softmax(torch.tensor([0.0, 0.0, 0.0]), 0)[2]
    expected1 = -torch.log_softmax(torch.tensor([0.5, 0.1]), 0)[0]
    torch.testing.assert_close(losses, torch.stack([expected0, expected1]))
    assert counts.tolist() == [1, 1]


def test_masked_heads_get_zero_gradient():
    logits = torch.randn(4, 2, 3)
    logits[:, 1, 2] = NEG
    logits.requires_grad_(True)
    labels = torch.tensor([[0, IGNORE], [1, IGNORE], [IGNORE, 1], [2, IGNORE]])
    reward_loss(logits, labels, NUM_CLASSES).backward()
    grad = logits.grad
    assert (grad[[0, 1, 3], 1] == 0).all() and (grad[2, 0] == 0).all()  # unlabelled (row, head) entries
    assert grad[2, 1, :2].abs().sum() > 0 and grad[0, 0].abs().sum() > 0
    assert torch.isfinite(grad).all()


def test_head_without_any_label_in_the_batch_has_zero_loss():
    logits = torch.zeros(2, 2, 3)
    losses, counts = per_head_losses(logits, torch.tensor([[0, IGNORE], [1, IGNORE]]), NUM_CLASSES)
    assert losses[1] == 0 and counts[1] == 0


def test_label_smoothing_spreads_over_the_heads_own_levels_only():
    logits = torch.tensor([[[0.0, 0.0, 0.0], [0.0, math.log(3), NEG]]])
    losses, _ = per_head_losses(logits, torch.tensor([[0, 1]]), NUM_CLASSES, label_smoothing=0.2)
    # head 1: q = (0.1, 0.9), log p = (log 1/4, log 3/4); the padded class takes no mass (finite loss)
    expected1 = -(0.1 * math.log(0.25) + 0.9 * math.log(0.75))
    assert math.isclose(float(losses[1]), expected1, rel_tol=1e-6)
    # head 0: uniform p, any q summing to 1 -> log 3
    assert math.isclose(float(losses[0]), math.log(3), rel_tol=1e-6)


def test_ordinal_term_charges_two_levels_off_more_than_one():
    near = torch.tensor([[[0.0, 10.0, 0.0], [0.0, 0.0, NEG]]])  # predicts level 1
    far = torch.tensor([[[0.0, 0.0, 10.0], [0.0, 0.0, NEG]]])  # predicts level 2
    labels = torch.tensor([[0, IGNORE]])
    ce_near = per_head_losses(near, labels, NUM_CLASSES)[0][0]
    ce_far = per_head_losses(far, labels, NUM_CLASSES)[0][0]
    assert math.isclose(float(ce_near), float(ce_far), rel_tol=1e-5)  # plain CE cannot tell them apart
    ord_near = per_head_losses(near, labels, NUM_CLASSES, ordinal_weight=1.0)[0][0] - ce_near
    ord_far = per_head_losses(far, labels, NUM_CLASSES, ordinal_weight=1.0)[0][0] - ce_far
    # expected EMD^2: CDFs (0,1,1) vs (1,1,1) -> 1; (0,0,1) vs (1,1,1) -> 2
    assert math.isclose(float(ord_near), 1.0, abs_tol=1e-3) and math.isclose(float(ord_far), 2.0, abs_tol=1e-3)


def test_balanced_class_weights_equalise_each_levels_total_weight():
    labels = torch.tensor([[0, 1], [0, 1], [0, 0], [1, IGNORE]])
    weights = balanced_class_weights(labels, NUM_CLASSES)
    # head 0: n=4, counts (3, 1, 0) -> 4/(3*3), 4/(3*1), 0 for the absent level
    torch.testing.assert_close(weights[0], torch.tensor([4 / 9, 4 / 3, 0.0]))
    torch.testing.assert_close(weights[1, :2], torch.tensor([3 / 2, 3 / 4]))


def test_class_weights_give_a_weighted_mean():
    logits = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, NEG]], [[2.0, 0.0, 0.0], [0.0, 0.0, NEG]]])
    labels = torch.tensor([[0, IGNORE], [1, IGNORE]])
    weights = torch.tensor([[1.0, 3.0, 1.0], [1.0, 1.0, 0.0]])
    losses, _ = per_head_losses(logits, labels, NUM_CLASSES, class_weights=weights)
    l0 = math.log(3)
    l1 = -float(torch.log_softmax(torch.tensor([2.0, 0.0, 0.0]), 0)[1])
    assert math.isclose(float(losses[0]), (l0 + 3 * l1) / 4, rel_tol=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(-1, 1)), min_size=1, max_size=6), st.floats(0, 0.5))
def test_loss_is_finite_and_non_negative(rows, smoothing):
    labels = torch.tensor([[a, b if b >= 0 else IGNORE] for a, b in rows])
    logits = torch.randn(len(rows), 2, 3)
    logits[:, 1, 2] = NEG
    losses, _ = per_head_losses(logits, labels, NUM_CLASSES, label_smoothing=smoothing, ordinal_weight=0.5)
    assert torch.isfinite(losses).all() and (losses >= 0).all()


def test_a_head_left_unbalanced_weighs_every_level_one():
    labels = torch.tensor([[0, 1], [0, 1], [0, 0], [1, IGNORE]])
    weights = balanced_class_weights(labels, NUM_CLASSES, balance=[False, True])
    torch.testing.assert_close(weights[0], torch.ones(3))
    torch.testing.assert_close(weights[1], balanced_class_weights(labels, NUM_CLASSES)[1])
