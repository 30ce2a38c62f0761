"""Frozen lower layers: the cached path equals a plain forward, trains only the top, and resumes exactly."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from moslim.reward.encoding import PairEncoder, pad_id_of
from moslim.reward.frozen import FrozenPrefix, freeze_prefix, layer_stack
from moslim.reward.losses import pairwise_loss, upper_log_odds
from moslim.reward.model import MultiHeadRewardModel
from moslim.reward.train import RUN_FILE, train_reward_model
from moslim.reward.trainer import BatchPlan


def _model(tiny_causal_lm_dir, objectives):
    return MultiHeadRewardModel.from_backbone(str(tiny_causal_lm_dir), objectives, input_format="plain")


def test_cached_lower_layers_give_the_same_logits_as_a_plain_forward(tiny_causal_lm_dir, tiny_tokenizer, objectives):
    model = _model(tiny_causal_lm_dir, objectives).eval()
    encoder = PairEncoder(tiny_tokenizer, "plain", 64)
    items = [encoder.encode(q, a) for q, a in [("what is it ?", "the answer is paris ."), ("why ?", "safe"),
                                                 ("explain the dog", "the dog " * 9)]]
    prefix = FrozenPrefix(model, 1, pad_id_of(tiny_tokenizer), torch.device("cpu"))
    states = prefix.encode(items)
    assert [s.shape[0] for s in states] == [len(i.input_ids) for i in items]
    assert prefix.check(items, states, atol=1e-5) < 1e-5


def test_freeze_prefix_freezes_embeddings_and_first_layers_only(tiny_causal_lm_dir, objectives):
    model = _model(tiny_causal_lm_dir, objectives)
    freeze_prefix(model.backbone, 1)
    owner, name = layer_stack(model.backbone)
    layers = getattr(owner, name)
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert all(p.requires_grad for p in layers[1].parameters())
    assert not model.backbone.get_input_embeddings().weight.requires_grad
    with pytest.raises(ValueError, match="between 1 and"):
        freeze_prefix(model.backbone, 5)


def test_training_on_the_cache_moves_only_the_top_layers_and_heads(tiny_rm_config, tmp_path):
    config = dataclasses.replace(
        tiny_rm_config, output_dir=str(tmp_path / "cached"),
        model=dataclasses.replace(tiny_rm_config.model, freeze_layers=1),
        data=dataclasses.replace(tiny_rm_config.data, eval=None, pairs=None, train_pairs=tiny_rm_config.data.pairs),
        train=dataclasses.replace(tiny_rm_config.train, max_steps=20, pair_weight=1.0, pair_batch_size=2,
                                  log_every=5, save_every=0))
    out = train_reward_model(config)
    summary = json.loads((out / RUN_FILE).read_text())
    assert summary["cache_seconds"] is not None and summary["train_pairs"] == 4
    assert any("pair_loss" in h for h in summary["history"])
    fresh = MultiHeadRewardModel.from_backbone(config.model.backbone, MultiHeadRewardModel.from_pretrained(out)
                                               .objectives, input_format="plain").state_dict()
    trained = load_file(out / "model.safetensors")
    moved = {k for k in trained if k in fresh and not torch.equal(trained[k], fresh[k].to(trained[k].dtype))}
    assert any(".layers.1." in k for k in moved) and any(k.startswith("heads") for k in moved)
    assert not any(".layers.0." in k or "embed_tokens" in k for k in moved)
    losses = [h["loss"] for h in summary["history"] if "loss" in h]
    assert losses[-1] < losses[0]


def test_cached_run_killed_and_resumed_equals_an_uninterrupted_one(tiny_rm_config, tmp_path):
    from transformers import TrainerCallback

    class Killed(Exception):
        pass

    class KillAt3(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise Killed

    def run(name, callbacks=()):
        config = dataclasses.replace(
            tiny_rm_config, output_dir=str(tmp_path / name),
            model=dataclasses.replace(tiny_rm_config.model, freeze_layers=1),
            data=dataclasses.replace(tiny_rm_config.data, eval=None, pairs=None))
        return train_reward_model(config, callbacks=callbacks)

    full = load_file(run("full") / "model.safetensors")
    with pytest.raises(Killed):
        run("resumed", [KillAt3()])
    resumed = load_file(run("resumed") / "model.safetensors")
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_length_buckets_keep_every_row_once_per_epoch_and_batch_similar_lengths():
    lengths = [((i * 37) % 100) for i in range(200)]
    plan = BatchPlan(200, 8, seed=3, lengths=lengths, buckets=5)
    epoch = [plan.indices(m) for m in range(plan.per_epoch)]
    assert sorted(sum(epoch, [])) == list(range(200))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in epoch) / len(epoch)
    plain = BatchPlan(200, 8, seed=3)
    plain_spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b)
                       for b in (plain.indices(m) for m in range(plain.per_epoch))) / plain.per_epoch
    assert spread < 0.5 * plain_spread
    assert BatchPlan(200, 8, seed=3, lengths=lengths, buckets=5).indices(30) == plan.indices(30)


def test_pairwise_loss_matches_bradley_terry_by_hand():
    num_levels = torch.tensor([3, 2])
    chosen = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 2.0, float("-inf")]]])
    rejected = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, float("-inf")]]])
    heads = torch.tensor([1])
    assert upper_log_odds(chosen, heads, num_levels).item() == pytest.approx(2.0)
    loss, accuracy = pairwise_loss(chosen, rejected, heads, num_levels)
    assert loss.item() == pytest.approx(-torch.nn.functional.logsigmoid(torch.tensor(3.0)).item())
    assert accuracy == 1.0
    # three levels: upper half = level 2 (>= ceil(3/2)), lower = levels 0, 1
    three = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.0, float("-inf")]]])
    expected = 1.0 - torch.log(torch.tensor(2.0)).item()
    assert upper_log_odds(three, torch.tensor([0]), num_levels).item() == pytest.approx(expected, abs=1e-6)
