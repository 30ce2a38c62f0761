"""Real TRL GRPO / RLOO steps on a tiny Llama against a tiny real reward model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from moslim.config import from_dict, load_config
from moslim.objectives import ObjectiveSet
from moslim.policy.train import RUN_FILE, RLConfig, last_complete_checkpoint, train_policy, trl_args
from moslim.preferences import PromptTemplate


def _changed(before_dir, after_dir) -> list[str]:
    before = load_file(before_dir / "model.safetensors")
    after = load_file(after_dir / "model.safetensors")
    assert before.keys() == after.keys()
    return [k for k in before if not torch.equal(before[k], after[k])]


@pytest.mark.parametrize("algorithm,trl", [("grpo", {}), ("grpo", {"loss_type": "dr_grpo"}),
                                           ("grpo", {"loss_type": "bnpo", "beta": 0.05}), ("rloo", {}),
                                           ("grpo", {"multi_objective_aggregation": "normalize_then_sum"})])
def test_rl_steps_change_the_policy_parameters(tmp_path, make_config, tiny_causal_lm_dir, tiny_rm_dir, prompts_file,
                                               algorithm, trl):
    config = make_config(tiny_causal_lm_dir, tiny_rm_dir, prompts_file, tmp_path / "run", algorithm, trl)
    final = train_policy(config)
    assert _changed(tiny_causal_lm_dir, final), "no parameter moved after 2 RL steps"
    summary = json.loads((tmp_path / "run" / RUN_FILE).read_text())
    assert summary["time_limit_fired_at"] is None
    assert summary["global_step"] == 2 and [s["step"] for s in summary["steps"]] == [1, 2]
    if trl.get("beta") or algorithm == "rloo":
        assert all("kl" in s for s in summary["steps"])


def test_run_summary_and_final_folder_carry_what_the_pipeline_needs(tmp_path, make_config, tiny_causal_lm_dir,
                                                                   tiny_rm_dir, prompts_file, objectives):
    config = make_config(tiny_causal_lm_dir, tiny_rm_dir, prompts_file, tmp_path / "run")
    final = train_policy(config)
    names = {p.name for p in final.iterdir()}
    assert {"config.json", "model.safetensors", "objectives.yaml", "prompt_template.yaml"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)  # no pickles
    assert ObjectiveSet.from_yaml(final / "objectives.yaml") == objectives
    summary = json.loads((tmp_path / "run" / RUN_FILE).read_text())
    step = summary["steps"][-1]
    for key in ("reward", "completions/mean_length", "time/generation", "time/reward", "time/update"):
        assert key in step, key
    assert any(k.endswith("/hit_rate") for k in step)
    assert step["time/step"] == pytest.approx(step["time/generation"] + step["time/reward"] + step["time/update"])
    assert summary["wall_s"] > 0 and summary["final"] == str(final)
    assert (tmp_path / "run" / "rl_curves.png").stat().st_size > 10_000  # the curves, written before the summary


def test_resume_continues_from_the_saved_step(tmp_path, make_config, tiny_causal_lm_dir, tiny_rm_dir, prompts_file):
    out = tmp_path / "run"
    first = make_config(tiny_causal_lm_dir, tiny_rm_dir, prompts_file, out)
    train_policy(first)
    first_steps = json.loads((out / RUN_FILE).read_text())["steps"]
    assert last_complete_checkpoint(out).name == "checkpoint-2"
    more = make_config(tiny_causal_lm_dir, tiny_rm_dir, prompts_file, out, trl={"max_steps": 3})
    train_policy(more)
    summary = json.loads((out / RUN_FILE).read_text())
    assert summary["resumed_from"].endswith("checkpoint-2")
    assert [s["step"] for s in summary["steps"]] == [1, 2, 3]
    assert summary["steps"][:2] == first_steps  # steps 1-2 come from the checkpoint, not a re-run
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3


def test_a_failed_checkpoint_save_names_the_folder_and_keeps_the_last_complete_one(
        tmp_path, make_config, tiny_causal_lm_dir, tiny_rm_dir, prompts_file, monkeypatch):
    """Disk full at the second checkpoint: an OSError naming checkpoint-2; checkpoint-1 stays resumable."""
    import errno

    from transformers import Trainer

    out = tmp_path / "run"
    config = make_config(tiny_causal_lm_dir, tiny_rm_dir, prompts_file, out, trl={"save_steps": 1})
    original = Trainer._save_optimizer_and_scheduler

    def full_disk(self, output_dir):
        if output_dir.endswith("checkpoint-2"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", full_disk)
    with pytest.raises(OSError, match=r"could not save .*checkpoint-2 .*No space left on device.*Is the disk full"):
        train_policy(config)
    assert last_complete_checkpoint(out).name == "checkpoint-1"


def test_incomplete_checkpoint_is_not_resumed_from(tmp_path):
    (tmp_path / "checkpoint-1").mkdir()
    (tmp_path / "checkpoint-1" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-2").mkdir()  # a crash while saving: no trainer_state.json yet
    assert last_complete_checkpoint(tmp_path).name == "checkpoint-1"


@pytest.mark.parametrize("save", ["adapter", "merged"])
def test_lora_policy_saves_as_adapter_or_merged(tmp_path, make_config, tiny_causal_lm_dir, tiny_rm_dir,
                                                prompts_file, save):
    config = make_config(tiny_causal_lm_dir, tiny_rm_dir, prompts_file, tmp_path / "run")
    config.policy.lora.enabled, config.policy.lora.save, config.policy.lora.r = True, save, 4
    final = train_policy(config)
    names = {p.name for p in final.iterdir()}
    if save == "adapter":
        assert "adapter_config.json" in names and "adapter_model.safetensors" in names
        from moslim.policy.generate import generate_completions

        answers = generate_completions(final, ["what is water ?"], "verbosity=1", max_new_tokens=4, progress=False)
        assert len(answers) == 1 and len(answers[0]) == 1  # the adapter loads on its base for generation
    else:
        assert "adapter_config.json" not in names and _changed(tiny_causal_lm_dir, final)


def test_custom_template_is_used_and_saved_with_the_policy(tmp_path, make_config, tiny_causal_lm_dir, tiny_rm_dir,
                                                           prompts_file):
    template = tmp_path / "template.yaml"
    template.write_text("header: 'Targets:'\nline: '* {name} -> {level}'\nempty: 'No targets.'\n")
    config = make_config(tiny_causal_lm_dir, tiny_rm_dir, prompts_file, tmp_path / "run")
    config.data.template = str(template)
    final = train_policy(config)
    saved = (final / "prompt_template.yaml").read_text()
    assert "{name} -> {level}" in saved
    assert PromptTemplate(header="Targets:", line="* {name} -> {level}", empty="No targets.").to_dict() \
        == __import__("yaml").safe_load(saved)


def test_config_rejects_unknown_keys_with_a_hint(tmp_path):
    path = tmp_path / "rl.yaml"
    path.write_text("train:\n  algoritm: grpo\n")
    with pytest.raises(ValueError, match="did you mean 'algorithm'"):
        load_config(RLConfig, path)


def test_unknown_trl_option_is_reported(tmp_path):
    with pytest.raises(ValueError, match="trl section"):
        trl_args("grpo", tmp_path, {"not_an_option": 1})


def test_activation_checkpointing_is_off_on_cpu_unless_asked_for(tmp_path):
    assert trl_args("grpo", tmp_path, {"use_cpu": True}).gradient_checkpointing is False
    assert trl_args("rloo", tmp_path, {"use_cpu": True}).gradient_checkpointing is False
    assert trl_args("grpo", tmp_path, {"use_cpu": True, "gradient_checkpointing": True}).gradient_checkpointing


def test_fast_rollout_with_rloo_is_rejected_before_any_model_loads():
    config = from_dict(RLConfig, {"train": {"algorithm": "rloo", "rollout": "fast"}})
    with pytest.raises(ValueError, match="GRPO only"):
        config.check()


def test_per_objective_aggregation_gives_trl_one_reward_function_per_nameable_objective(
        tmp_path, make_config, tiny_causal_lm_dir, tiny_rm_dir, prompts_file):
    from moslim.policy.train import build_trainer

    config = make_config(tiny_causal_lm_dir, tiny_rm_dir, prompts_file, tmp_path / "run",
                         trl={"multi_objective_aggregation": "normalize_then_sum"})
    config.data.objective_weights = {"helpfulness": 0}
    config.data.num_named = [1, 2]
    trainer, reward, *_ = build_trainer(config)
    assert trainer.reward_func_names == ["moslim_verbosity", "moslim_harmlessness"]
    assert all(f.parent is reward for f in trainer.reward_funcs)
    config.trl.pop("multi_objective_aggregation")
    trainer, *_ = build_trainer(config)
    assert trainer.reward_func_names == ["moslim"]


@pytest.mark.parametrize("algorithm", ["ppo", "rloo"])
def test_per_objective_aggregation_outside_grpo_is_rejected(algorithm):
    config = from_dict(RLConfig, {"train": {"algorithm": algorithm},
                                  "trl": {"multi_objective_aggregation": "normalize_then_sum"}})
    with pytest.raises(ValueError, match="grpo only"):
        config.check()


def test_old_rollout_value_trl_is_refused_with_its_new_name():
    with pytest.raises(ValueError, match=r"override 'train.rollout=trl': 'trl' is not available: renamed to 'stock'"):
        load_config(RLConfig, None, ["train.rollout=trl"])


@pytest.mark.parametrize("rollout,fast", [("fast", True), ("auto", True), ("stock", False)])
def test_rollout_setting_picks_the_generation_path(tmp_path, make_config, tiny_causal_lm_dir, tiny_rm_dir,
                                                   prompts_file, rollout, fast):
    from moslim.policy.train import build_trainer

    config = make_config(tiny_causal_lm_dir, tiny_rm_dir, prompts_file, tmp_path / "run")
    config.train.rollout = rollout
    trainer, *_ = build_trainer(config)
    assert (trainer.rollout_func is not None) == fast  # on CPU "auto" means the fast path


def test_fast_rollout_trains_the_policy(tmp_path, make_config, tiny_causal_lm_dir, tiny_rm_dir, prompts_file):
    config = make_config(tiny_causal_lm_dir, tiny_rm_dir, prompts_file, tmp_path / "run")
    config.train.rollout = "fast"
    final = train_policy(config)
    assert _changed(tiny_causal_lm_dir, final)
    steps = json.loads((tmp_path / "run" / RUN_FILE).read_text())["steps"]
    assert all(s["time/generation"] > 0 for s in steps)


@pytest.mark.parametrize("rollout", ["fast", "stock"])
def test_frozen_layers_stay_put_while_the_rest_trains(tmp_path, make_config, tiny_causal_lm_dir, tiny_rm_dir,
                                                      prompts_file, rollout):
    config = make_config(tiny_causal_lm_dir, tiny_rm_dir, prompts_file, tmp_path / "run", "grpo", {"beta": 0.05})
    config.train.rollout, config.policy.freeze_layers = rollout, 1
    changed = _changed(tiny_causal_lm_dir, train_policy(config))
    assert changed and all(k.startswith("model.layers.1.") or k == "model.norm.weight" for k in changed), changed
    assert any(k.startswith("model.layers.1.mlp") for k in changed)


def test_frozen_layers_are_checked_before_any_model_loads():
    with pytest.raises(ValueError, match="LoRA already freezes"):
        from_dict(RLConfig, {"policy": {"freeze_layers": 2, "lora": {"enabled": True}}}).check()
    with pytest.raises(ValueError, match="policy.freeze_layers"):
        from_dict(RLConfig, {"policy": {"freeze_layers": 0}})


def test_time_limit_stops_after_a_step_with_a_checkpoint(tmp_path, make_config, tiny_causal_lm_dir, tiny_rm_dir,
                                                         prompts_file):
    config = make_config(tiny_causal_lm_dir, tiny_rm_dir, prompts_file, tmp_path / "run",
                         trl={"max_steps": 5, "save_steps": 100})
    config.train.max_minutes = 0.0  # already over: stop after the first step
    train_policy(config)
    summary = json.loads((tmp_path / "run" / RUN_FILE).read_text())
    assert summary["global_step"] == 1 and summary["max_steps"] == 5
    assert summary["time_limit_fired_at"] == 1  # the run says its length came from the clock, not the config
    assert last_complete_checkpoint(tmp_path / "run").name == "checkpoint-1"


def test_level_contrast_puts_a_prompts_levels_in_one_step_of_trls_sampler(tmp_path, objectives, prompts_file):
    from trl.trainer.utils import RepeatSampler

    from moslim.config import load_config
    from moslim.policy.data import read_prompt_records
    from moslim.policy.train import RLConfig, rl_dataset

    overrides = ["data.preferences_per_prompt=2", "data.level_contrast=true", "data.num_named=[1, 1]",
                 "data.objective_weights={helpfulness: 0, harmlessness: 0}"]  # verbosity alone
    config = load_config(RLConfig, "configs/demo/rl.yaml", overrides)
    config.check()
    args = trl_args("grpo", tmp_path, {**config.trl, "use_cpu": True})
    assert args.shuffle_dataset is True
    records = read_prompt_records(prompts_file)
    dataset = rl_dataset(config, records, objectives, None, args)
    assert args.shuffle_dataset is False  # TRL keeps the order, so the two rows of a prompt share a step
    per_step = args.generation_batch_size // args.num_generations
    sampler = RepeatSampler(dataset, mini_repeat_count=args.num_generations, batch_size=per_step,
                            shuffle=args.shuffle_dataset, seed=args.seed)
    indices = list(sampler)[: per_step * args.num_generations]  # the first step's completions
    step_rows = sorted(set(indices))
    assert len(step_rows) == per_step == 4
    ids = [dataset[i]["id"] for i in step_rows]
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[1] != ids[2]  # two prompts, each at two levels
    assert dataset[step_rows[0]]["preference"] != dataset[step_rows[1]]["preference"]


def test_level_contrast_refuses_a_level_count_that_splits_across_steps(tmp_path, objectives, prompts_file):
    from moslim.config import load_config
    from moslim.policy.data import read_prompt_records
    from moslim.policy.train import RLConfig, rl_dataset

    overrides = ["data.preferences_per_prompt=3", "data.level_contrast=true"]
    config = load_config(RLConfig, "configs/demo/rl.yaml", overrides)
    args = trl_args("grpo", tmp_path, {**config.trl, "use_cpu": True})  # 16 completions / 4 = 4 prompts a step
    with pytest.raises(ValueError, match="4 prompt.*not a multiple of data.preferences_per_prompt=3"):
        rl_dataset(config, read_prompt_records(prompts_file), objectives, None, args)
    single = load_config(RLConfig, "configs/demo/rl.yaml", ["data.level_contrast=true"])
    with pytest.raises(ValueError, match="preferences_per_prompt >= 2"):
        single.check()


def test_data_objectives_may_reword_the_levels_but_not_change_them(tmp_path):
    from moslim.data.demo import OBJECTIVES
    from moslim.objectives import ObjectiveSet
    from moslim.policy.train import reworded_objectives

    data = OBJECTIVES.to_dict()
    data["objectives"][1]["levels"] = ["tiny", "short", "medium", "long"]
    path = tmp_path / "objectives.yaml"
    ObjectiveSet.from_dict(data).to_yaml(path)
    assert reworded_objectives(str(path), OBJECTIVES, "the reward model's objectives")["verbosity"].level_descriptions \
        == ("tiny", "short", "medium", "long")
    data["objectives"][1]["levels"] = ["short", "long"]
    ObjectiveSet.from_dict(data).to_yaml(path)
    with pytest.raises(ValueError, match=r"objectives\.yaml.*does not match the reward model's objectives"):
        reworded_objectives(str(path), OBJECTIVES, "the reward model's objectives")
