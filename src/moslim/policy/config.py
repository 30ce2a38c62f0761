"""The RL config (``moslim rl train --config``): one dataclass per YAML section (``policy``, ``reward``, ``data``,
``train``) and ``trl``, passed to TRL's GRPOConfig / RLOOConfig as is."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from moslim import models
from moslim.config import LoraSection, bounded
from moslim.objectives import ObjectiveSet
from moslim.paths import resolve_path
from moslim.preferences import PreferenceSampler
from moslim.reward.mapping import check_method


@dataclass
class PolicySection:
    model: str = "smollm2-135m-instruct"  # built-in name, local folder or hub id
    dtype: Literal["float32", "bfloat16"] = "float32"  # weights' dtype; TRL's `bf16` sets autocast
    lora: LoraSection = field(default_factory=LoraSection)
    # Freeze the input embeddings (with tied weights, the output head too) and the first N layers: the update's
    # backward stops at layer N (less time); null trains every weight
    freeze_layers: int | None = bounded(None, low=1)


@dataclass
class RewardSection:
    model: str = "runs/demo/rm"  # a folder saved by `moslim rm train`
    method: str = "zscore"  # mapping method (moslim.reward.mapping.METHODS) or "package.module:function"
    options: dict[str, Any] = field(default_factory=dict)  # mapping options, e.g. {stats: batch}
    # A factored objective (the demo's harmlessness) scored as "harm": level 1 = 1 - P(unsafe) x P(complies),
    # the model's own head; or "appropriate": level 1 = P(unsafe) x P(refuses) + P(safe) x P(complies), which
    # also penalises refusing a safe request (moslim.reward.scorer.appropriate_probs).
    factored_as: Literal["harm", "appropriate"] = "harm"


@dataclass
class DataSection:
    prompts: str = "moslim:assets/demo/prompts_train.jsonl"  # PromptRecord JSONL ("moslim:" = in the package)
    objectives: str | None = None  # YAML; default: the reward model's objective set (must match it)
    template: str | None = None  # prompt template YAML (header, line, empty); default PromptTemplate
    num_named: list[int] = field(default_factory=lambda: [1, 2])  # objectives a preference names: [low, high]
    # Per objective, a weight for being named (default 1 each; 0 = never named, so never rewarded). The
    # reward is a mean over the named objectives, so every objective named beside another shares the signal.
    objective_weights: dict[str, float] = field(default_factory=dict)
    preferences_per_prompt: int = bounded(1, low=1)  # rows per prompt, each with its own sampled preference
    # The rows of one prompt name the same objectives at different levels (a seeded permutation of each one's
    # levels) and are trained in the same step: the step compares one question asked at several levels.
    # Needs preferences_per_prompt >= 2 dividing the prompts a generation batch holds.
    level_contrast: bool = False
    # Per objective, a weight per level for sampling targets (default uniform). The demo gives
    # harmlessness level 0 ("comply even with harmful requests") weight 0: RL never rewards it.
    level_weights: dict[str, list[float]] = field(default_factory=dict)
    max_prompts: int | None = bounded(None, low=1)
    seed: int = 0  # preference sampling; the same seed rebuilds the same dataset on resume


@dataclass
class TrainSection:
    RETIRED: ClassVar[dict[str, dict[str, str]]] = {
        "rollout": {"trl": (
            "renamed to 'stock' on 2026-12-04, the same value `moslim generate --engine` takes for the stock "
            "path; write rollout: stock")}}

    # grpo and ppo (a critic and GAE on GRPO's machinery, moslim.policy.ppo) on TRL's GRPOTrainer; rloo on TRL's
    # RLOOTrainer. PPO's own settings are the `ppo` section.
    algorithm: Literal["grpo", "rloo", "ppo"] = "grpo"
    # The CPU fast path or the stock one (TRL's own), for *both* generation (moslim.policy.fast's batched
    # sampler vs TRL's generate / vLLM) and the update's log-probs and attention (completion positions only,
    # eager attention on CPU, vs TRL's forward with the model's attention). "auto": fast on CPU, stock
    # elsewhere. The same values as `moslim generate --engine`.
    rollout: Literal["auto", "fast", "stock"] = "auto"
    output_dir: str = "runs/rl"
    resume: str = "auto"  # "auto" (last complete checkpoint if any), "never", or a checkpoint folder
    max_minutes: float | None = bounded(None, low=0, low_inclusive=False)  # stop after the step past this


@dataclass
class PPOSection:
    """PPO's critic and advantages (``train.algorithm: ppo``; moslim.policy.ppo). The clipped surrogate, KL
    and learning rate are TRL's (``trl.epsilon``, ``trl.beta``, ``trl.learning_rate``)."""

    value_model: str | None = None  # the critic's start: None = the policy's weights with a zero scalar head
    vf_coef: float = bounded(0.1)  # weight of the value loss beside the policy loss
    cliprange_value: float = bounded(0.2, low=0, low_inclusive=False)  # how far a value may move from the rollout's
    gamma: float = bounded(1.0, high=1.0)  # discount per token
    lam: float = bounded(0.95, high=1.0)  # GAE's lambda: 1 = Monte Carlo returns minus values, 0 = one-step TD
    # The batch's scalar rewards centred and scaled before GAE: MOSLIM's are <= 0, and against a critic that
    # starts at 0 uncentred rewards push down every answer's last token, the end-of-answer one included.
    normalize_rewards: bool = True
    whiten_advantages: bool = True  # mean 0, variance 1 over the batch's completion tokens
    value_learning_rate: float | None = bounded(None, low=0, low_inclusive=False)  # None: trl.learning_rate


@dataclass
class RLConfig:
    policy: PolicySection = field(default_factory=PolicySection)
    reward: RewardSection = field(default_factory=RewardSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    ppo: PPOSection = field(default_factory=PPOSection)  # read only when train.algorithm is ppo
    trl: dict[str, Any] = field(default_factory=dict)  # passed to GRPOConfig / RLOOConfig as is

    def check(self) -> None:
        """Cross-field checks that need no model."""
        named = self.data.num_named
        if len(named) not in (1, 2) or not 0 <= named[0] <= named[-1]:
            raise ValueError(f"data.num_named must be [low, high] with 0 <= low <= high, got {named}")
        if self.data.level_contrast and self.data.preferences_per_prompt < 2:
            raise ValueError("data.level_contrast asks one prompt at several levels: set data.preferences_per_prompt "
                             f">= 2 (the levels per prompt), got {self.data.preferences_per_prompt}")
        if "output_dir" in self.trl:
            raise ValueError("set train.output_dir, not trl.output_dir (checkpoints go under it)")
        if self.train.algorithm != "ppo" and self.ppo != PPOSection():
            raise ValueError(f"the ppo section is set but train.algorithm is {self.train.algorithm!r}: set "
                             "train.algorithm=ppo, or drop the section")
        if self.policy.freeze_layers and self.policy.lora.enabled:
            raise ValueError(f"policy.freeze_layers={self.policy.freeze_layers} with policy.lora.enabled: LoRA already "
                             "freezes the base weights; use one of them")
        if self.trl.get("multi_objective_aggregation", "sum_then_normalize") != "sum_then_normalize" and (
                self.train.algorithm != "grpo"):
            raise ValueError(f"trl.multi_objective_aggregation={self.trl['multi_objective_aggregation']!r} works with "
                             f"train.algorithm=grpo only (got {self.train.algorithm!r}): PPO's critic and RLOO take "
                             "the summed reward")
        if self.train.algorithm == "rloo" and self.train.rollout == "fast":
            raise ValueError("train.rollout=fast works with GRPO only (TRL's RLOOTrainer takes no rollout_func)")
        if self.train.resume not in ("auto", "never") and not Path(self.train.resume).is_dir():
            raise ValueError(f"train.resume={self.train.resume!r}: expected 'auto', 'never' or a checkpoint folder")
        method = self.reward.method
        check_method(import_callable(method) if ":" in method else method, self.reward.options)

    def check_inputs(self, reward_model: bool = True) -> None:
        """The policy and (unless a scorer stands in for it) the reward model exist, and the preference
        sampling fits the reward model's objectives: checked without loading a model, before the output
        folder is made. Separate from :meth:`check`, which needs no files."""
        if reward_model:
            models.check_reference(self.reward.model, "reward.model")
            self.check_factored_as(Path(self.reward.model) / "config.json")
        source = (resolve_path(self.data.objectives) if self.data.objectives
                  else Path(self.reward.model) / "objectives.yaml")
        if Path(source).is_file():
            self.check_sampling(ObjectiveSet.from_yaml(source))
        models.check_reference(self.policy.model, "policy.model")
        if self.train.algorithm == "ppo" and self.ppo.value_model is not None:
            models.check_reference(self.ppo.value_model, "ppo.value_model")

    def check_factored_as(self, model_config: Path) -> None:
        """``reward.factored_as`` other than "harm" needs a reward model with a factored objective."""
        if self.reward.factored_as == "harm" or not model_config.is_file():
            return
        if not json.loads(model_config.read_text(encoding="utf-8")).get("factored"):
            raise ValueError(f"reward.factored_as={self.reward.factored_as!r} needs a reward model with a factored "
                             f"objective (model.factored when it was trained); {model_config.parent} has none")

    def check_sampling(self, objectives: ObjectiveSet) -> None:
        """``data.num_named``, ``data.objective_weights`` and ``data.level_weights`` fit these objectives."""
        data = self.data
        try:
            PreferenceSampler(objectives, num_named=(data.num_named[0], data.num_named[-1]),
                              level_weights=data.level_weights, objective_weights=data.objective_weights)
        except ValueError as err:
            raise ValueError(f"data: {err}") from None


def import_callable(spec: str):
    """``"package.module:function"`` -> the function (a user's mapping method)."""
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import {spec!r} ({err}); expected 'package.module:function'") from None
