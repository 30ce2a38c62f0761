"""Training: it learns, it checkpoints, and a killed run resumes to the same result."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from moslim.paths import last_complete_checkpoint
from moslim.reward.model import MultiHeadRewardModel
from moslim.reward.train import RUN_FILE, train_reward_model
from moslim.reward.trainer import BatchPlan


class Killed(Exception):
    pass


class KillAt(TrainerCallback):
    """Raises Killed at the end of optimizer step ``step``, before that step's checkpoint would be written."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed


class Steps(TrainerCallback):
    """The optimizer steps a run trains, in order."""

    def __init__(self):
        self.seen: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.seen.append(state.global_step)


def _with(config, output_dir, evaluate=False, **train):
    """The config with another output folder and train options; without the final evaluation unless asked."""
    data = config.data if evaluate else dataclasses.replace(config.data, eval=None, pairs=None)
    return dataclasses.replace(config, output_dir=str(output_dir), data=data,
                               train=dataclasses.replace(config.train, **train))


def test_training_writes_model_evaluation_and_run_file_last(tiny_rm_config):
    out = train_reward_model(tiny_rm_config)
    summary = json.loads((out / RUN_FILE).read_text())
    assert summary["steps"] == 6 and summary["train_seconds"] > 0
    assert set(summary["metrics"]["heads"]) == {"helpfulness", "verbosity", "harmlessness"}
    assert summary["metrics"]["pairs"]["harmlessness"]["n"] == 4
    assert (out / "eval" / "confusion_verbosity.png").exists()
    assert not list(out.glob("checkpoint-*"))
    files = [p for p in out.iterdir() if p.is_file()]
    assert max(files, key=lambda p: p.stat().st_mtime_ns).name == RUN_FILE
    model = MultiHeadRewardModel.from_pretrained(out)
    assert model.objectives.names == ["helpfulness", "verbosity", "harmlessness"]


def test_training_lowers_the_loss(tiny_rm_config, tmp_path):
    # 50 steps: Trainer's warm-up starts at a learning rate of 0, so the first step does not move the weights
    config = _with(tiny_rm_config, tmp_path / "long", max_steps=50, log_every=10, save_every=0)
    history = json.loads((train_reward_model(config) / RUN_FILE).read_text())["history"]
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses[-1] < 0.8 * losses[0]


def test_killed_and_resumed_run_equals_an_uninterrupted_run(tiny_rm_config, tmp_path):
    # head dropout makes the RNG state matter too
    config = dataclasses.replace(tiny_rm_config, model=dataclasses.replace(tiny_rm_config.model, head_dropout=0.2))
    full = train_reward_model(_with(config, tmp_path / "full"))

    resumed_dir = tmp_path / "resumed"
    with pytest.raises(Killed):
        train_reward_model(_with(config, resumed_dir), callbacks=[KillAt(5)])  # the last checkpoint is from step 4
    checkpoint = last_complete_checkpoint(resumed_dir)
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert checkpoint.name == "checkpoint-4" and state["global_step"] == 4 and not (resumed_dir / RUN_FILE).exists()
    steps = Steps()
    train_reward_model(_with(config, resumed_dir), callbacks=[steps])
    assert steps.seen == [5, 6]  # it did not start over
    a, b = load_file(full / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_a_half_written_checkpoint_is_never_resumed_from(tiny_rm_config, tmp_path):
    out = tmp_path / "rm"
    with pytest.raises(Killed):
        train_reward_model(_with(tiny_rm_config, out), callbacks=[KillAt(3)])  # checkpoint-2 is complete
    # What a kill during the save of step 4 leaves behind: files, but no trainer_state.json (written last).
    shutil.copytree(out / "checkpoint-2", out / "checkpoint-4")
    (out / "checkpoint-4" / "trainer_state.json").unlink()
    (out / "checkpoint-4" / "model.safetensors").write_bytes(b"partial")
    steps = Steps()
    train_reward_model(_with(tiny_rm_config, out), callbacks=[steps])
    assert steps.seen[0] == 3  # resumed from checkpoint-2, not from the broken checkpoint-4


def test_no_resume_starts_over(tiny_rm_config, tmp_path):
    out = tmp_path / "rm"
    with pytest.raises(Killed):
        train_reward_model(_with(tiny_rm_config, out), callbacks=[KillAt(3)])
    steps = Steps()
    train_reward_model(_with(tiny_rm_config, out, resume="never"), callbacks=[steps])
    assert steps.seen[0] == 1


def test_finished_run_with_same_config_is_not_repeated(tiny_rm_config, tmp_path):
    config = _with(tiny_rm_config, tmp_path / "rm")
    train_reward_model(config)
    steps = Steps()
    train_reward_model(config, callbacks=[steps])
    assert steps.seen == []


def test_frozen_backbone_trains_only_the_heads(tiny_rm_config, tmp_path):
    config = dataclasses.replace(_with(tiny_rm_config, tmp_path / "frozen"),
                                 model=dataclasses.replace(tiny_rm_config.model, freeze_backbone=True))
    out = train_reward_model(config)
    before = load_file(tiny_rm_config.model.backbone + "/model.safetensors")
    after = load_file(out / "model.safetensors")
    torch.testing.assert_close(after["backbone.layers.0.mlp.up_proj.weight"],
                               before["model.layers.0.mlp.up_proj.weight"])


def test_lora_training_saves_a_plain_merged_model(tiny_rm_config, tmp_path):
    lora = dataclasses.replace(tiny_rm_config.model.lora, enabled=True, r=4)
    config = dataclasses.replace(_with(tiny_rm_config, tmp_path / "lora", max_steps=3, save_every=2),
                                 model=dataclasses.replace(tiny_rm_config.model, lora=lora))
    out = train_reward_model(config)
    weights = load_file(out / "model.safetensors")
    assert not any("lora" in key for key in weights)
    before = load_file(tiny_rm_config.model.backbone + "/model.safetensors")
    assert not torch.allclose(weights["backbone.layers.0.mlp.up_proj.weight"],
                              before["model.layers.0.mlp.up_proj.weight"])
    MultiHeadRewardModel.from_pretrained(out)


def test_training_options_run_encoder_ordinal_balanced_bf16_tensorboard(tiny_rm_config, tiny_encoder_dir, tmp_path):
    config = dataclasses.replace(
        _with(tiny_rm_config, tmp_path / "enc", evaluate=True, max_steps=2, ordinal_weight=0.5, label_smoothing=0.1,
              class_weights="balanced", bf16=True, grad_accum=2, eval_every=1, report_to=["tensorboard"]),
        model=dataclasses.replace(tiny_rm_config.model, backbone=str(tiny_encoder_dir)))
    out = train_reward_model(config)
    summary = json.loads((out / RUN_FILE).read_text())
    assert any("eval_acc_verbosity" in h for h in summary["history"])
    assert list((out / "tensorboard").iterdir())
    assert MultiHeadRewardModel.from_pretrained(out).config.input_format == "pair"


def test_batch_plan_covers_each_epoch_once_and_is_a_function_of_the_step():
    plan = BatchPlan(n=10, batch_size=4, seed=1)
    epoch0 = sum((plan.indices(m) for m in range(3)), [])
    assert sorted(epoch0) == list(range(10))
    assert BatchPlan(10, 4, 1).indices(4) == plan.indices(4)  # step 4 = epoch 1, batch 1, from any start
    assert sorted(sum((plan.indices(m) for m in range(3, 6)), [])) == list(range(10))


def test_heads_learn_faster_on_a_schedule_that_warms_up_then_decays(tiny_rm_config, tmp_path):
    config = _with(tiny_rm_config, tmp_path / "lr", warmup_ratio=0.3, log_every=1, save_every=0,
                   learning_rate=1e-3, head_learning_rate=1e-2)
    history = json.loads((train_reward_model(config) / RUN_FILE).read_text())["history"]
    rates = [h["learning_rate"] for h in history if "loss" in h]  # the heads' group, logged after each step
    # 2 warm-up steps (ceil(0.3 x 6)) from 0, then a linear decay from head_learning_rate
    assert rates == pytest.approx([0.0, 5e-3, 1e-2, 7.5e-3, 5e-3, 2.5e-3])
    assert all(f"acc_{name}" in history[0] for name in ("helpfulness", "verbosity", "harmlessness"))


def test_max_layers_keeps_the_first_layers_and_saves_a_model_of_that_depth(tiny_rm_config, tmp_path):
    config = dataclasses.replace(_with(tiny_rm_config, tmp_path / "short", max_steps=1),
                                 model=dataclasses.replace(tiny_rm_config.model, max_layers=1))
    out = train_reward_model(config)
    model = MultiHeadRewardModel.from_pretrained(out)
    assert len(model.backbone.layers) == 1 and model.config.text_config.num_hidden_layers == 1
    assert not any(k.startswith("backbone.layers.1.") for k in load_file(out / "model.safetensors"))


def test_max_layers_beyond_the_backbone_is_a_clear_error(tiny_rm_config, tmp_path):
    config = dataclasses.replace(_with(tiny_rm_config, tmp_path / "deep"),
                                 model=dataclasses.replace(tiny_rm_config.model, max_layers=5))
    with pytest.raises(ValueError, match="max_layers 5 must be between 1 and the backbone's 2 layers"):
        train_reward_model(config)


def test_config_rejects_lora_with_a_frozen_backbone():
    from moslim.reward.config import LoraSection, ModelSection, RewardTrainConfig

    with pytest.raises(ValueError, match="exclude each other"):
        RewardTrainConfig(model=ModelSection(freeze_backbone=True, lora=LoraSection(enabled=True)))


def test_resume_from_a_named_checkpoint_folder(tiny_rm_config, tmp_path):
    first = tmp_path / "first"
    with pytest.raises(Killed):
        train_reward_model(_with(tiny_rm_config, first), callbacks=[KillAt(3)])
    steps = Steps()
    train_reward_model(_with(tiny_rm_config, tmp_path / "second", resume=str(first / "checkpoint-2")),
                       callbacks=[steps])
    assert steps.seen[0] == 3  # the checkpoint was written after step 2 (save_every=2)


def test_balanced_heads_balances_only_the_heads_it_names(tiny_rm_config, tmp_path):
    def trained(name, **train):
        out = train_reward_model(_with(tiny_rm_config, tmp_path / name, save_every=0, **train))
        return load_file(out / "model.safetensors")

    plain = trained("none", class_weights="none")
    no_head = trained("empty", class_weights="balanced", balanced_heads=[])
    one_head = trained("verbosity", class_weights="balanced", balanced_heads=["verbosity"])
    for key in plain:  # balancing no head is the plain loss; balancing one changes what trains
        torch.testing.assert_close(no_head[key], plain[key], rtol=0, atol=0)
    assert any(not torch.equal(one_head[key], plain[key]) for key in plain)


def test_balanced_heads_must_name_heads_and_needs_balanced_weights(tiny_rm_config, tmp_path):
    from moslim.reward.config import RewardTrainConfig, TrainSection

    with pytest.raises(ValueError, match=r"names \['verbosty'\], which this model does not train; its heads: "):
        train_reward_model(_with(tiny_rm_config, tmp_path / "typo", class_weights="balanced",
                                 balanced_heads=["verbosty"]))
    with pytest.raises(ValueError, match="needs train.class_weights: balanced, got 'none'"):
        RewardTrainConfig(train=TrainSection(balanced_heads=["verbosity"]))
