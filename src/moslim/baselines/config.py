"""The baseline config (``moslim baseline METHOD --config``): one dataclass per YAML section.

The same file shape serves every method; a method reads the sections it needs (MORLHF and Soups: ``rl``;
RiC: ``ric``; MOSLIM and prompt-only: ``policy``); ``grid`` and ``eval`` are shared, so every method is
evaluated on the same points, prompts and judges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from moslim.config import bounded
from moslim.evaluation.config import GenerationConfig

METHODS = ("morlhf", "soups", "ric", "moslim", "prompt-only")


@dataclass
class GridSection:
    # The two objectives the demo can measure with independent judges (verbosity: exact word count;
    # harmlessness: refusal judge x the prompt's known safety). Helpfulness's judge is below the 0.8 bar.
    objectives: list[str] = field(default_factory=lambda: ["verbosity", "harmlessness"])
    points: int = bounded(11, low=2)  # weight vectors (t, 1 - t), t = 0, 0.1, ..., 1 (as in the RiC paper)


@dataclass
class RLSection:
    config: str = "configs/demo/rl.yaml"  # MOSLIM's RL recipe: the baselines train with the same settings
    overrides: list[str] = field(default_factory=list)  # dotted overrides for that config
    # equal_compute: the methods share MOSLIM's total RL steps (M policies get 1/M each);
    # equal_steps: every policy gets MOSLIM's steps.
    budget: Literal["equal_compute", "equal_steps"] = "equal_compute"
    # MOSLIM's RL steps; null: the recipe's own (``config``'s trl.max_steps, so the budget follows the demo)
    moslim_steps: int | None = bounded(None, low=1)
    policies: int = bounded(3, low=1)  # MORLHF's M policies on the grid (3 at demo size on CPU, 11 on a GPU)


@dataclass
class RiCSection:
    model: str = "smollm2-135m-instruct"  # the starting policy (the same as MOSLIM's)
    data: str = "moslim:assets/demo/rm_train.jsonl.gz"  # offline (prompt, response) rows, scored by the reward model
    max_examples: int = bounded(1024, low=1)  # rows taken (seeded shuffle): scoring costs ~1 s per 30 rows on CPU
    seed: int = 0
    header: str = "You are a helpful assistant."  # the system message the rewards are appended to
    online_rounds: int = 0  # rounds of: generate at desired rewards, score, add to the data, SFT again
    online_prompts: str = "moslim:assets/demo/prompts_train.jsonl"
    online_samples: int = bounded(32, low=1)  # generations per online round
    max_new_tokens: int = bounded(128, low=1)  # online generation cap (as in RL)
    sft: dict[str, Any] = field(default_factory=dict)  # passed to trl.SFTConfig as is (max_steps: see budget)


@dataclass
class EvalSection:
    judge: str | None = "runs/demo/judge"  # the independent judge (refusal head for harmlessness)
    objectives: str | None = "moslim:assets/demo/objectives.yaml"  # its labelling spec is the exact verbosity judge
    prompts: str = "moslim:assets/demo/prompts_eval.jsonl"  # held-out prompts, as `moslim eval`
    num_prompts: int = bounded(16, low=1)  # per grid point; alternately safe and unsafe
    prompt_seed: int = 0
    min_judge_f1: float = 0.8  # as `moslim eval`: a judge model below it is not trusted (the reward model judges)
    bootstrap_resamples: int = bounded(1000, low=1)
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(max_new_tokens=128, batch_size=24))


@dataclass
class BaselineConfig:
    out: str = "runs/compare/method"  # every stage writes under it; baseline_run.json (written last) marks done
    reward_model: str = "runs/demo/rm"  # the one reward model: training rewards and the evaluation's RM judge
    policy: str | None = None  # MOSLIM / prompt-only: the policy evaluated (MOSLIM's final/, or the base model)
    template: str | None = None  # MOSLIM / prompt-only: prompt template YAML (default: saved with the policy)
    grid: GridSection = field(default_factory=GridSection)
    rl: RLSection = field(default_factory=RLSection)
    ric: RiCSection = field(default_factory=RiCSection)
    eval: EvalSection = field(default_factory=EvalSection)

    def check(self, method: str) -> None:
        """Cross-field checks before any model loads."""
        if method not in METHODS:
            raise ValueError(f"unknown baseline method {method!r}; valid: {', '.join(METHODS)}")
        names = self.grid.objectives
        if len(names) != 2 or names[0] == names[1]:
            raise ValueError(f"grid.objectives: expected two different objectives (the grid is 2-D), got {names}")
        if method == "morlhf" and self.rl.policies > self.grid.points:
            raise ValueError(f"rl.policies={self.rl.policies}: at most grid.points={self.grid.points} policies")
        if method in ("moslim", "prompt-only") and not self.policy:
            raise ValueError(f"method {method}: set 'policy' (the folder or built-in model to evaluate)")
        if "max_steps" in self.ric.sft and self.ric.sft["max_steps"] < 1:
            raise ValueError(f"ric.sft.max_steps: expected >= 1, got {self.ric.sft['max_steps']}")
        if "output_dir" in self.ric.sft:
            raise ValueError("set 'out', not ric.sft.output_dir (RiC's checkpoints go under it)")

    def moslim_steps(self) -> int:
        """MOSLIM's RL steps: ``rl.moslim_steps``, else ``trl.max_steps`` of the RL recipe (``rl.config``)."""
        if self.rl.moslim_steps is not None:
            return self.rl.moslim_steps
        from moslim.config import load_config
        from moslim.demo import find_config
        from moslim.policy.config import RLConfig

        config = load_config(RLConfig, find_config(self.rl.config), self.rl.overrides)
        steps = config.trl.get("max_steps")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"rl.moslim_steps is null and {self.rl.config} sets no trl.max_steps >= 1 "
                             f"(got {steps!r}); set rl.moslim_steps")
        return steps

    def steps_per_policy(self, policies: int) -> int:
        """RL (or SFT) steps each of ``policies`` policies gets under the budget (at least 1)."""
        steps = self.moslim_steps()
        return steps if self.rl.budget == "equal_steps" else max(1, steps // policies)
