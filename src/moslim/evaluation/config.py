"""The evaluation config (``moslim eval --config``): the policies, judges and prompts, the preference grid,
generation settings and the bootstrap."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from moslim.config import bounded


@dataclass
class GridConfig:
    RENAMED: ClassVar[dict[str, tuple[str, str]]] = {
        "pairs": ("objective_pairs", "'pairs' alone means the reward model's preference pairs; renamed 2026-12-04")}

    # Objectives asked for alone at each of their levels (empty = every objective).
    singles: list[str] = field(default_factory=list)
    # Pairs of objectives for Pareto fronts (empty = every pair).
    objective_pairs: list[list[str]] = field(default_factory=list)
    # Levels per objective on the pair grids; an objective not listed uses all its levels. Keep small
    # on CPU: a pair grid has len(levels_a) x len(levels_b) preferences.
    pair_levels: dict[str, list[int]] = field(default_factory=dict)
    # Preferences per prompt: 0 runs the whole grid on every prompt; N > 0 gives each prompt N preferences of
    # the grid (a seeded rotation, so every preference gets about as many prompts). For many prompts on a CPU.
    per_prompt: int = 0


@dataclass
class GenerationConfig:
    RENAMED: ClassVar[dict[str, tuple[str, str]]] = {
        "samples": ("num_samples", "the name moslim generate and generate_completions use; renamed 2026-12-04")}

    max_new_tokens: int = bounded(160, low=1)  # ~135 words at ~0.85 words/token: every verbosity level is reachable
    temperature: float = bounded(0.7, low=0, low_inclusive=False)
    top_p: float = bounded(0.95, low=0, low_inclusive=False, high=1)
    num_samples: int = bounded(1, low=1)  # completions per (prompt, preference)
    batch_size: int = bounded(16, low=1)  # prompts decoding at once (x num_samples rows); on the fast path the next
    # prompts join as rows end (continuous batching)
    seed: int = 0


@dataclass
class BootstrapConfig:
    num_resamples: int = bounded(1000, low=1)  # resamples of the prompts
    confidence: float = bounded(0.95, low=0, low_inclusive=False, high=0.999999)
    seed: int = 0


@dataclass
class EvalConfig:
    policy: str = ""  # the RL policy folder
    base_policy: str | None = "smollm2-135m-instruct"  # the prompt-only control; null skips it
    reward_model: str = ""  # the reward model folder (its objectives define the evaluation)
    judge: str | None = None  # independent judge model folder (helpfulness, harmlessness)
    objectives: str | None = None  # objectives YAML with a `labelling:` spec (exact verbosity judge)
    # Who says whether an answer refuses, for harmlessness judged XSTest's way (refusal x the prompt's known
    # safety): "rule", the string-match rule (moslim.data.refusal; no model), or "model", the judge's refusal
    # head. The rule is the default: on SmolLM2's own answers the MiniLM head called 28% of them refusals where
    # the rule found 3%, and every disagreement read by hand was a compliance (docs/evaluation.md).
    refusal: Literal["rule", "model"] = "rule"
    prompts: str = ""  # held-out prompts JSONL
    template: str | None = None  # prompt template YAML the policy was trained with (null = default)
    num_prompts: int = bounded(20, low=1)
    prompt_seed: int = 0
    # Held-out macro-F1 a judge model must reach on an objective for its controllability figures to be shown
    # (exact judges always count); below it the report says the objective cannot be judged.
    min_judge_f1: float = 0.8
    out: str = "runs/eval"
    grid: GridConfig = field(default_factory=GridConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
