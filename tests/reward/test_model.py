"""The multi-head reward model: shapes, padding, pooling, save/load, Auto classes."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel

from moslim.reward.model import MultiHeadRewardConfig, MultiHeadRewardModel, is_decoder_config, pool


@pytest.fixture
def decoder_rm(tiny_causal_lm_dir, objectives):
    return MultiHeadRewardModel.from_backbone(tiny_causal_lm_dir, objectives).eval()


def _left_and_right(ids: list[list[int]], pad: int = 0):
    t = max(map(len, ids))
    right = torch.tensor([row + [pad] * (t - len(row)) for row in ids])
    left = torch.tensor([[pad] * (t - len(row)) + row for row in ids])
    right_mask = torch.tensor([[1] * len(row) + [0] * (t - len(row)) for row in ids])
    return right, right_mask, left, right_mask.flip(-1)


def test_logits_have_one_row_per_head_padded_with_minus_inf(decoder_rm, objectives):
    ids = torch.tensor([[10, 11, 12], [13, 14, 15]])
    logits = decoder_rm(ids, torch.ones_like(ids)).logits
    assert logits.shape == (2, 3, 4)  # helpfulness 3, verbosity 4, harmlessness 2 levels
    assert torch.isinf(logits[:, 0, 3]).all() and torch.isinf(logits[:, 2, 2:]).all()
    assert torch.isfinite(logits[:, 1]).all()
    probs = logits.softmax(-1)
    assert (probs[:, 2, 2:] == 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 3))


def test_decoder_defaults_to_last_token_pooling_and_encoder_to_mean(decoder_rm, tiny_encoder_dir, objectives):
    assert decoder_rm.config.pooling == "last" and decoder_rm.config.input_format == "chat"
    encoder_rm = MultiHeadRewardModel.from_backbone(tiny_encoder_dir, objectives)
    assert encoder_rm.config.pooling == "mean" and encoder_rm.config.input_format == "pair"
    assert is_decoder_config(decoder_rm.config.text_config)
    assert not is_decoder_config(encoder_rm.config.text_config)


def test_pool_matches_hand_computed_vectors():
    hidden = torch.arange(12.0).reshape(1, 4, 3).repeat(2, 1, 1)  # (b=2, t=4, d=3)
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])  # right- then left-padded
    # expected: last real token is position 2 for row 0 and 3 for row 1; first is 0 and 1
    torch.testing.assert_close(pool(hidden, mask, "last"), torch.tensor([[6.0, 7, 8], [9, 10, 11]]))
    torch.testing.assert_close(pool(hidden, mask, "cls"), torch.tensor([[0.0, 1, 2], [3, 4, 5]]))
    torch.testing.assert_close(pool(hidden, mask, "mean"), torch.tensor([[3.0, 4, 5], [6, 7, 8]]))


@pytest.mark.parametrize("backbone", ["decoder", "encoder"])
@pytest.mark.parametrize("pooling", ["last", "mean", "cls"])
def test_left_and_right_padding_give_the_same_pooled_vector(backbone, pooling, tiny_causal_lm_dir,
                                                             tiny_encoder_dir, objectives):
    path = tiny_causal_lm_dir if backbone == "decoder" else tiny_encoder_dir
    model = MultiHeadRewardModel.from_backbone(path, objectives, pooling=pooling).eval()
    right, right_mask, left, left_mask = _left_and_right([[10, 11, 12, 13, 14], [15, 16], [17, 18, 19]])
    with torch.no_grad():
        a = model(right, right_mask)
        b = model(left, left_mask)
    torch.testing.assert_close(a.pooled, b.pooled, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-4)


def test_padding_does_not_change_a_rows_logits(decoder_rm):
    alone = decoder_rm(torch.tensor([[15, 16]]), torch.tensor([[1, 1]])).logits
    right, right_mask, _, _ = _left_and_right([[15, 16], [10, 11, 12, 13, 14, 15]])
    batched = decoder_rm(right, right_mask).logits[:1]
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=1e-4)


def test_save_load_round_trip_gives_identical_logits_and_objectives(decoder_rm, objectives, tmp_path):
    decoder_rm.config.labelling = {"verbosity": {"source": "word count"}}
    decoder_rm.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "objectives.yaml").exists()
    loaded = MultiHeadRewardModel.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[10, 11, 12, 13], [14, 15, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        assert torch.equal(decoder_rm(ids, mask).logits, loaded(ids, mask).logits)
    assert loaded.objectives == objectives
    assert loaded.config.labelling == {"verbosity": {"source": "word count"}}
    from moslim.objectives import ObjectiveSet
    assert ObjectiveSet.from_yaml(tmp_path / "objectives.yaml") == objectives


def test_auto_classes_load_the_saved_reward_model(decoder_rm, tmp_path):
    decoder_rm.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), MultiHeadRewardConfig)
    assert isinstance(AutoModel.from_pretrained(tmp_path), MultiHeadRewardModel)


def test_heads_init_is_seeded(tiny_causal_lm_dir, objectives):
    a = MultiHeadRewardModel.from_backbone(tiny_causal_lm_dir, objectives, seed=3)
    b = MultiHeadRewardModel.from_backbone(tiny_causal_lm_dir, objectives, seed=3)
    c = MultiHeadRewardModel.from_backbone(tiny_causal_lm_dir, objectives, seed=4)
    assert torch.equal(a.heads[1].weight, b.heads[1].weight)
    assert not torch.equal(a.heads[1].weight, c.heads[1].weight)


def test_config_rejects_unknown_pooling(objectives):
    with pytest.raises(ValueError, match="pooling 'max' is not one of last, mean, cls"):
        MultiHeadRewardConfig(objectives=objectives.to_dict(), pooling="max")
