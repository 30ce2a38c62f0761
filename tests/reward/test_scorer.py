"""RewardScorer: batch-order independence, padded classes at 0, prompts read without system turns."""

from __future__ import annotations

import pytest
import torch

from moslim.reward.model import MultiHeadRewardModel
from moslim.reward.scorer import RewardScorer, expected_levels

PROMPTS = ["what is water ?", "how can i help the cat ?", "explain the dog", "why ?", "who is the user ?"]
RESPONSES = ["good water", "the answer is paris . " * 6, "no", "yes it is good", "the user is you"]


@pytest.fixture(scope="module")
def saved_rm(tmp_path_factory, tiny_causal_lm_dir, tiny_tokenizer):
    from moslim.objectives import ObjectiveSet
    from tests.conftest import ASSETS

    path = tmp_path_factory.mktemp("rm")
    torch.manual_seed(0)
    model = MultiHeadRewardModel.from_backbone(tiny_causal_lm_dir, ObjectiveSet.from_yaml(ASSETS / "objectives.yaml"))
    for head in model.heads:  # larger head weights so rows differ visibly
        head.weight.data.normal_(0, 1.0)
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def test_probs_have_shape_b_k_c_with_zero_on_padded_classes(saved_rm):
    scorer = RewardScorer.from_pretrained(saved_rm, device="cpu", batch_size=2, max_length=64)
    probs = scorer.score(PROMPTS, RESPONSES)
    assert probs.shape == (5, 3, 4)
    assert (probs[:, 0, 3] == 0).all() and (probs[:, 2, 2:] == 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(5, 3))
    assert scorer.objectives.names == ["helpfulness", "verbosity", "harmlessness"]


def test_scores_do_not_depend_on_batch_size_or_order(saved_rm):
    one = RewardScorer.from_pretrained(saved_rm, device="cpu", batch_size=1, max_length=64)
    many = RewardScorer.from_pretrained(saved_rm, device="cpu", batch_size=4, max_length=64)
    expected = one.score(PROMPTS, RESPONSES)
    torch.testing.assert_close(many.score(PROMPTS, RESPONSES), expected, atol=1e-5, rtol=1e-4)
    reverse = many.score(PROMPTS[::-1], RESPONSES[::-1])
    torch.testing.assert_close(reverse, expected.flip(0), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(expected[0], expected[1])


def test_chat_prompt_with_system_turn_scores_like_the_plain_question(saved_rm):
    scorer = RewardScorer.from_pretrained(saved_rm, device="cpu", max_length=64)
    chat = [{"role": "system", "content": "level verbosity : four"}, {"role": "user", "content": PROMPTS[0]}]
    torch.testing.assert_close(scorer.score([chat], RESPONSES[:1]), scorer.score(PROMPTS[:1], RESPONSES[:1]))


def test_levels_are_the_argmax_and_expected_levels_the_mean(saved_rm):
    scorer = RewardScorer.from_pretrained(saved_rm, device="cpu", max_length=64)
    probs = scorer.score(PROMPTS, RESPONSES)
    assert torch.equal(scorer.levels(PROMPTS, RESPONSES), probs.argmax(-1))
    torch.testing.assert_close(expected_levels(torch.tensor([[[0.5, 0.0, 0.5, 0.0]]])), torch.tensor([[1.0]]))


def test_mismatched_lengths_are_a_clear_error(saved_rm):
    scorer = RewardScorer.from_pretrained(saved_rm, device="cpu", max_length=64)
    with pytest.raises(ValueError, match="got 2 prompts but 1 responses"):
        scorer.score(PROMPTS[:2], RESPONSES[:1])


def test_scorer_defaults_to_the_training_length(tiny_rm_config, tmp_path):
    import dataclasses

    from moslim.reward.train import train_reward_model

    config = dataclasses.replace(tiny_rm_config, output_dir=str(tmp_path / "rm"),
                                 data=dataclasses.replace(tiny_rm_config.data, eval=None, pairs=None, max_length=48),
                                 train=dataclasses.replace(tiny_rm_config.train, max_steps=1))
    out = train_reward_model(config)
    assert RewardScorer.from_pretrained(out).encoder.max_length == 48
    assert RewardScorer.from_pretrained(out, max_length=32).encoder.max_length == 32
