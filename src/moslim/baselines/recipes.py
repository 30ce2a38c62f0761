"""The baseline recipes as resumable stages: train (one stage per policy) -> evaluate -> ``baseline_run.json``.

Each stage writes its marker last (a training run's ``moslim_run.json`` / ``sft_run.json``, the evaluation's
``points.json``), so a killed run resumes at the first unfinished stage, and a training stage itself resumes
from its last complete checkpoint. ``stages.json`` keeps wall time, CPU seconds and peak RSS per stage: the
compute accounting of ``moslim compare``.

- MORLHF: M policies, each RL'd (the MOSLIM recipe, same settings) on ``sum_i w_i s_i`` for one grid point.
- Soups: one policy per objective (RL on that objective's score alone), interpolated at every grid point.
- RiC: see :mod:`moslim.baselines.ric`. MOSLIM / prompt-only: nothing to train, evaluated as they are.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moslim import usage
from moslim.baselines.config import BaselineConfig
from moslim.baselines.grid import spread_indices, weight_grid
from moslim.baselines.rewards import head_weights

log = logging.getLogger(__name__)

RUN_FILE = "baseline_run.json"
LINEAR = "moslim.baselines.rewards:linear_scalarisation"
Announce = Callable[[int, int, str, bool], None]  # (index, total, stage, reused)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class Stages:
    """Runs named stages in order, skipping those whose marker exists; records time and memory in stages.json."""

    def __init__(self, out: Path, announce: Announce | None = None):
        self.out = out
        self.path = out / "stages.json"
        self.record = read_json(self.path) or {"stages": {}}
        self.announce = announce
        self.plan: list[tuple[str, Path, Callable[[], dict[str, Any] | None]]] = []

    def add(self, name: str, marker: Path, fn: Callable[[], dict[str, Any] | None]) -> None:
        self.plan.append((name, marker, fn))

    def run(self) -> dict[str, Any]:
        for i, (name, marker, fn) in enumerate(self.plan, 1):
            reused = marker.exists()
            if self.announce:
                self.announce(i, len(self.plan), name, reused)
            if reused:
                self.record["stages"].setdefault(name, {})["status"] = "reused"
                continue
            start, cpu0 = time.perf_counter(), usage.cpu_seconds()
            per_stage = usage.reset_peak_rss()
            extra = fn() or {}
            self.record["stages"][name] = {"status": "ran", "seconds": round(time.perf_counter() - start, 1),
                                           "cpu_seconds": round(usage.cpu_seconds() - cpu0, 1),
                                           "peak_rss_mib": round(usage.peak_rss_mib()),
                                           "peak_rss_since": "stage start" if per_stage else "process start",
                                           **extra}
            write_json(self.path, self.record)
            usage.release_free_memory()  # the stage's models are garbage now: free them, pages and all
        write_json(self.path, self.record)
        return self.record


# -- RL baselines ---------------------------------------------------------------------------------
def rl_config(cfg: BaselineConfig, weights: list[float], output_dir: Path, steps: int, all_names: list[str]):
    """MOSLIM's RL config with the linear scalarisation as the reward, no preference in the prompt."""
    from moslim.config import load_config
    from moslim.demo import find_config
    from moslim.policy.train import RLConfig

    per_head = head_weights(weights, cfg.grid.objectives, all_names)
    overrides = [*cfg.rl.overrides, f"reward.model={cfg.reward_model}", f"reward.method={LINEAR}",
                 f"reward.options={{weights: {per_head}}}", "data.num_named=[0, 0]", "data.level_weights={}",
                 f"trl.max_steps={steps}", f"train.output_dir={output_dir}"]
    return load_config(RLConfig, find_config(cfg.rl.config), overrides)


def rl_stage(cfg: BaselineConfig, weights: list[float], output_dir: Path, steps: int, scorer) -> Callable:
    def train() -> dict[str, Any]:
        from moslim.policy.train import train_policy

        config = rl_config(cfg, weights, output_dir, steps, scorer().objectives.names)
        config.check()
        train_policy(config, scorer=scorer())
        summary = read_json(output_dir / "moslim_run.json")
        return {"kind": "rl", "steps": summary.get("global_step"), "weights": weights}
    return train


def lazy_scorer(path: str) -> Callable:
    """The reward model, loaded on first use (a resumed run with every training stage done never loads it)."""
    cache: dict[str, Any] = {}

    def get():
        if "scorer" not in cache:
            from moslim.policy.train import load_scorer

            cache["scorer"] = load_scorer(path)
        return cache["scorer"]
    return get


def policy_dir(out: Path, name: str) -> Path:
    return out / "policies" / name


def morlhf_plan(cfg: BaselineConfig, stages: Stages, scorer) -> list[dict[str, Any]]:
    """M RL stages; returns the evaluation points (only the trained ones: the others cost a new run)."""
    grid = weight_grid(cfg.grid.points)
    chosen = spread_indices(cfg.grid.points, cfg.rl.policies)
    steps = cfg.steps_per_policy(len(chosen))
    points = []
    for index in chosen:
        w = list(grid[index])
        name = f"w{w[0]:.2f}"
        folder = policy_dir(stages.out, name)
        stages.add(f"train {name}", folder / "moslim_run.json", rl_stage(cfg, w, folder, steps, scorer))
        points.append({"index": index, "weights": w, "policy": str(folder / "final"), "input": f"policy {name}"})
    return points


def soups_plan(cfg: BaselineConfig, stages: Stages, scorer) -> list[dict[str, Any]]:
    """One RL stage per objective; every grid point is an interpolation of those policies."""
    names = cfg.grid.objectives
    steps = cfg.steps_per_policy(len(names))
    folders = []
    for i, name in enumerate(names):
        w = [1.0 if j == i else 0.0 for j in range(len(names))]
        folder = policy_dir(stages.out, name)
        stages.add(f"train {name}", folder / "moslim_run.json", rl_stage(cfg, w, folder, steps, scorer))
        folders.append(str(folder / "final"))
    return [{"index": i, "weights": list(w), "soup": {"policies": folders, "lambdas": list(w)},
             "input": "lambda = (" + ", ".join(f"{x:.1f}" for x in w) + ")"}
            for i, w in enumerate(weight_grid(cfg.grid.points))]


def fixed_plan(cfg: BaselineConfig) -> list[dict[str, Any]]:
    """MOSLIM / prompt-only: one policy, the grid point's target levels in its system prompt."""
    return [{"index": i, "weights": list(w), "policy": cfg.policy, "input": "target levels"}
            for i, w in enumerate(weight_grid(cfg.grid.points))]


def run_baseline(method: str, cfg: BaselineConfig, announce: Announce | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Run ``method``'s stages under ``cfg.out`` and write ``baseline_run.json`` last; return it."""
    from moslim.baselines.evaluate import evaluate_points
    from moslim.baselines.summary import summarise_run

    cfg.check(method)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    stages = Stages(out, announce)
    scorer = lazy_scorer(cfg.reward_model)
    if method == "morlhf":
        points = morlhf_plan(cfg, stages, scorer)
    elif method == "soups":
        points = soups_plan(cfg, stages, scorer)
    elif method == "ric":
        from moslim.baselines.ric import ric_plan

        points = ric_plan(cfg, stages, scorer)
    else:
        points = fixed_plan(cfg)
    stages.add("evaluate", out / "points.json",
               lambda: evaluate_points(method, points, cfg, out, progress=progress))
    record = stages.run()
    summary = summarise_run(method, cfg, out, record)
    write_json(out / RUN_FILE, summary)
    return summary
