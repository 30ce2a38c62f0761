"""RL training of one policy against the MOSLIM reward (TRL GRPO or RLOO, or PPO on GRPO's machinery).

The recipe: load the reward model (its objectives are the policy's), build the prompt dataset with
seeded preferences in the system message, build TRL's trainer with our reward callable, train with
checkpoints (resuming from the last complete one), save the policy with its objectives and prompt
template in ``output_dir/final/``, and write ``output_dir/moslim_run.json`` last.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from moslim import models, usage
from moslim.config import to_dict
from moslim.objectives import ObjectiveSet
from moslim.paths import last_complete_checkpoint, raise_save_error, resolve_path  # noqa: F401 (also imported from here)
from moslim.policy.config import (  # noqa: F401  (the config classes are also importable from here)
    DataSection,
    LoraSection,
    PolicySection,
    RewardSection,
    RLConfig,
    TrainSection,
    import_callable,
)
from moslim.policy.data import load_template, read_prompt_records, rl_dataset_for, save_template
from moslim.policy.reward_fn import MoslimReward, Scorer
from moslim.precision import resolve_bf16

log = logging.getLogger(__name__)

RUN_FILE = "moslim_run.json"


# -- helpers ----------------------------------------------------------------------------------
def reworded_objectives(path: str, objectives: ObjectiveSet, what: str,
                        label: str = "data.objectives") -> ObjectiveSet:
    """``data.objectives`` (or what ``label`` names): the objective set at ``path``, which must have ``objectives``'
    names and levels (it may word them otherwise; ``what`` names ``objectives`` in the error)."""
    wanted = ObjectiveSet.from_yaml(resolve_path(path))
    if wanted.names != objectives.names or not torch.equal(wanted.num_levels, objectives.num_levels):
        raise ValueError(f"{label} ({path}: {wanted}) does not match {what} {objectives}")
    return wanted


def load_scorer(path: str, factored_as: str = "harm") -> Scorer:
    from moslim.reward.scorer import RewardScorer

    return RewardScorer.from_pretrained(path, factored_as=factored_as)


def trl_args(algorithm: str, output_dir: Path, options: dict[str, Any]):
    from trl import GRPOConfig, RLOOConfig

    cls = RLOOConfig if algorithm == "rloo" else GRPOConfig  # PPO is a GRPOTrainer (moslim.policy.ppo)
    defaults = {"logging_steps": 1, "save_strategy": "steps", "save_steps": 50, "report_to": "none"}
    use_cpu = options.get("use_cpu") or not torch.cuda.is_available()
    if "bf16" in options:  # "auto": bf16 autocast where the device runs it natively (moslim.precision)
        options = {**options, "bf16": resolve_bf16(options["bf16"], "cpu" if use_cpu else "cuda", "trl.bf16")}
    if use_cpu:
        # TRL turns activation checkpointing on by default: it saves accelerator memory by running each
        # layer's forward twice. On CPU memory is rarely short and the recomputation cost ~25% of the
        # update (SmolLM2-135M, measured); set trl.gradient_checkpointing: true to keep it.
        defaults["gradient_checkpointing"] = False
    try:
        return cls(output_dir=str(output_dir), **{**defaults, **options})
    except TypeError as err:  # an unknown key: TRL validates its own options
        raise ValueError(f"trl section: {err} (see {cls.__name__} in TRL's documentation)") from None


def rl_dataset(config: RLConfig, records, objectives: ObjectiveSet, template, args):
    """The RL rows of ``config.data`` for these prompts and objectives. With ``data.level_contrast`` it also
    keeps TRL from shuffling them (``args.shuffle_dataset``), so a prompt's rows land in one step."""
    data = config.data
    if data.level_contrast:
        prompts = args.generation_batch_size // args.num_generations
        if prompts % data.preferences_per_prompt:
            raise ValueError(f"data.level_contrast: a generation batch holds {prompts} prompt(s) "
                             f"(generation_batch_size {args.generation_batch_size} / num_generations "
                             f"{args.num_generations}), not a multiple of data.preferences_per_prompt="
                             f"{data.preferences_per_prompt}; a prompt's levels would straddle two steps")
        args.shuffle_dataset = False
    return rl_dataset_for(data, records, objectives, template)


def rollout_func_for(setting: str, algorithm: str, args, model, tokenizer):
    """``moslim.policy.fast``'s rollout when the setting and device call for it, else None (TRL generates)."""
    if setting == "stock" or algorithm == "rloo":
        return None
    from moslim.policy import fast

    device = "cpu" if args.use_cpu or not torch.cuda.is_available() else "cuda"
    if not fast.use_fast_path(setting, device):
        return None
    log.info("generation: moslim fast rollout (%s)", device)
    return fast.make_rollout_func(args=args, model=model, tokenizer=tokenizer)


class StepTimer(TrainerCallback):
    """Splits each optimizer step's wall time into generation / reward / update, logged as ``time/*``.

    ``update`` is the rest of the step: log-probs of old / reference policy, loss, backward, optimizer.
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.spent: dict[str, float] = defaultdict(float)
        self.start = time.perf_counter()
        trainer._generate = self._timed(trainer._generate, "generation")
        trainer._calculate_rewards = self._timed(trainer._calculate_rewards, "reward")

    def _timed(self, fn, key):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[key] += time.perf_counter() - start
        return wrapper

    def on_step_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        total = time.perf_counter() - self.start
        metrics = self.trainer._metrics["train"]
        metrics["time/step"].append(total)
        metrics["time/generation"].append(self.spent["generation"])
        metrics["time/reward"].append(self.spent["reward"])
        metrics["time/update"].append(total - self.spent["generation"] - self.spent["reward"])
        self.spent.clear()


class TimeLimit(TrainerCallback):
    """Ends training after the first step that finishes past ``minutes`` of wall time, with a checkpoint,
    so a run on a shared machine keeps its time budget and a later run resumes where it stopped."""

    def __init__(self, minutes: float):
        self.seconds = minutes * 60
        self.start = time.perf_counter()
        self.fired_at: int | None = None  # the step it stopped training at, if it did

    def on_step_end(self, args, state, control, **kwargs):
        if time.perf_counter() - self.start > self.seconds and state.global_step < state.max_steps:
            self.fired_at = state.global_step
            log.info("time limit of %.1f min reached at step %d: saving and stopping", self.seconds / 60,
                     state.global_step)
            control.should_training_stop = True
            control.should_save = True
        return control


# -- the recipe -------------------------------------------------------------------------------
def build_trainer(config: RLConfig, scorer: Scorer | None = None):
    """Everything up to ``trainer.train()``: returns (trainer, reward, objectives, template)."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer, RLOOTrainer

    config.check()
    config.check_inputs(reward_model=scorer is None)
    output_dir = Path(config.train.output_dir)
    args = trl_args(config.train.algorithm, output_dir, config.trl)
    scorer = scorer if scorer is not None else load_scorer(config.reward.model, config.reward.factored_as)
    objectives = scorer.objectives
    if config.data.objectives is not None:
        objectives = reworded_objectives(config.data.objectives, objectives, "the reward model's objectives")
    template = load_template(config.data.template)
    records = read_prompt_records(config.data.prompts)[: config.data.max_prompts]
    dataset = rl_dataset(config, records, objectives, template, args)

    method = config.reward.method
    method = import_callable(method) if ":" in method else method
    reward = MoslimReward(scorer, objectives, method=method, mapping_options=config.reward.options,
                          template=template)

    path = models.resolve(config.policy.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, config.policy.dtype))
    if config.policy.freeze_layers:
        from moslim.reward.frozen import freeze_prefix

        freeze_prefix(model, config.policy.freeze_layers, "policy.freeze_layers")  # the optimizer takes the rest
        log.info("policy: embeddings and layers 0-%d frozen, %.1fM of %.1fM weights train",
                 config.policy.freeze_layers - 1, sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
                 sum(p.numel() for p in model.parameters()) / 1e6)
    lora = config.policy.lora
    peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=lora.target_modules, task_type="CAUSAL_LM") if lora.enabled else None
    kwargs = dict(model=model, reward_funcs=reward_functions(config, reward, args), args=args, train_dataset=dataset,
                  processing_class=tokenizer, peft_config=peft_config)
    if config.train.algorithm == "grpo":
        rollout = rollout_func_for(config.train.rollout, "grpo", args, model, tokenizer)
        trainer = GRPOTrainer(**kwargs, rollout_func=rollout)
    elif config.train.algorithm == "ppo":
        from moslim.policy.ppo import PPOTrainer, load_value_model

        value_path = models.resolve(config.ppo.value_model) if config.ppo.value_model else path
        value_model = load_value_model(value_path, dtype=getattr(torch, config.policy.dtype))
        rollout = rollout_func_for(config.train.rollout, "ppo", args, model, tokenizer)
        trainer = PPOTrainer(**kwargs, rollout_func=rollout, value_model=value_model, ppo=config.ppo)
    else:
        trainer = RLOOTrainer(**kwargs)
    trainer.add_callback(StepTimer(trainer))
    guard_checkpoint_saves(trainer)
    if config.train.max_minutes is not None:
        trainer.add_callback(TimeLimit(config.train.max_minutes))
    return trainer, reward, objectives, template


def reward_functions(config: RLConfig, reward: MoslimReward, args) -> list:
    """TRL's reward functions: the MOSLIM reward as one, or with ``trl.multi_objective_aggregation:
    normalize_then_sum`` (GDPO) one per objective that a preference can name (``data.objective_weights`` not 0),
    so TRL normalises each objective within its group before summing them."""
    if getattr(args, "multi_objective_aggregation", "sum_then_normalize") != "normalize_then_sum":
        return [reward]
    weights = config.data.objective_weights
    return reward.per_objective([name for name in reward.objectives.names if weights.get(name, 1) != 0])


def guard_checkpoint_saves(trainer) -> None:
    """A failed mid-run checkpoint (disk full, a serialiser error) becomes an OSError naming the folder.

    transformers' ``Trainer._save_checkpoint`` writes ``checkpoint-N`` with trainer_state.json last, so a
    half-written folder is never resumed from (:func:`last_complete_checkpoint`); the earlier ones stay."""
    save = trainer._save_checkpoint

    def guarded(*args, **kwargs):
        try:
            return save(*args, **kwargs)
        except Exception as err:  # KeyboardInterrupt and the like pass through unchanged
            raise_save_error(Path(trainer.args.output_dir) / f"checkpoint-{trainer.state.global_step}", err)

    trainer._save_checkpoint = guarded


def train_policy(config: RLConfig, scorer: Scorer | None = None) -> Path:
    """Train, save ``output_dir/final/`` and write ``output_dir/moslim_run.json`` last; return final/.

    ``scorer`` stands in for ``reward.model`` (any object with ``.objectives`` and ``.score``).
    """
    start = time.perf_counter()
    output_dir = Path(config.train.output_dir)
    trainer, _, objectives, template = build_trainer(config, scorer)
    checkpoint = None
    if config.train.resume == "auto":
        checkpoint = last_complete_checkpoint(output_dir)
    elif config.train.resume != "never":
        checkpoint = Path(config.train.resume)
    if checkpoint is not None:
        log.info("resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    final = save_policy(trainer, objectives, template, output_dir / "final", config.policy.lora.save)
    if trainer.accelerator.is_main_process:
        write_run_summary(output_dir / RUN_FILE, config, trainer, final, time.perf_counter() - start,
                          resumed_from=checkpoint)
    trainer.accelerator.wait_for_everyone()
    return final


def save_policy(trainer, objectives: ObjectiveSet, template, final: Path, lora_save: str) -> Path:
    """Save the policy (HF folder), its tokenizer, objectives.yaml and prompt_template.yaml, atomically."""
    try:
        _save_policy_files(trainer, objectives, template, final, lora_save)
    except BaseException as err:
        shutil.rmtree(final.with_name(f".{final.name}.tmp"), ignore_errors=True)
        raise_save_error(final, err)
    trainer.accelerator.wait_for_everyone()
    return final


def _save_policy_files(trainer, objectives: ObjectiveSet, template, final: Path, lora_save: str) -> None:
    tmp = final.with_name(f".{final.name}.tmp")
    model = trainer.accelerator.unwrap_model(trainer.model)
    is_peft = hasattr(model, "peft_config")
    if is_peft and lora_save == "merged":
        if trainer.accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            model.merge_and_unload().save_pretrained(tmp, safe_serialization=True)
    else:
        trainer.save_model(str(tmp))  # gathers ZeRO-3 / FSDP shards; a LoRA model saves its adapter
    if trainer.accelerator.is_main_process:
        (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle: the run's config is in moslim_run.json
        trainer.processing_class.save_pretrained(tmp)
        objectives.to_yaml(tmp / "objectives.yaml")
        save_template(template, tmp / "prompt_template.yaml")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)


STEP_KEYS = ("step", "reward", "reward_std", "kl", "completions/mean_length", "time/step", "time/generation",
             "time/reward", "time/update", "step_time", "loss", "entropy", "learning_rate")


def write_run_summary(path: Path, config: RLConfig, trainer, final: Path, wall_s: float,
                      resumed_from: Path | None) -> None:
    """Per-step logs (reward, per-objective hit rate, length, KL, time split) and wall time, atomically;
    the curves go to ``rl_curves.png`` next to it, before it (its presence means "done")."""
    from moslim.policy.plots import plot_run

    steps = []
    for entry in trainer.state.log_history:
        if "reward" not in entry:
            continue  # the final train summary line
        steps.append({k: v for k, v in entry.items() if k in STEP_KEYS or k.startswith(("moslim/", "ppo/"))})
    if steps:
        plot_run(steps, path.with_name("rl_curves.png"), f"{config.train.algorithm.upper()} {config.policy.model}")
    split = {key: _mean(s.get(f"time/{key}") for s in steps) for key in ("step", "generation", "reward", "update")}
    limit = next((c for c in trainer.callback_handler.callbacks if isinstance(c, TimeLimit)), None)
    fired = limit.fired_at if limit is not None else None
    if fired is not None:
        log.warning("the %.0f-minute time limit stopped training at step %d of %d: this policy depends on the "
                    "machine's speed", config.train.max_minutes, fired, trainer.state.max_steps)
    summary = {
        "final": str(final), "algorithm": config.train.algorithm, "global_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps, "time_limit_fired_at": fired,
        "wall_s": round(wall_s, 1), "resumed_from": str(resumed_from) if resumed_from else None,
        "mean_time_s": split,
        # The process's peak resident memory: since the stage's start under `moslim demo`, which resets it.
        "peak_rss_mib": round(usage.peak_rss_mib()), "steps": steps, "config": to_dict(config),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None
