"""The demo pipeline: prepare models -> reward model -> judge -> RL -> eval -> report.

Each stage loads its own config (the file and overrides its command would take) and calls the library
function its command calls (``train_reward_model``, ``train_policy``, ``run_evaluation``), so the stage code
stays in its module; the demo only wires outputs to inputs. A stage is skipped when its
output exists (``moslim_run.json`` of a training run, ``metrics.json`` of the evaluation), so a
second run reuses finished work; ``force`` reruns a stage and every stage after it. Wall times, CPU
seconds and each stage's peak resident memory go to ``<out>/stages.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moslim import usage
from moslim.demo.config import DemoConfig, StageSection

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]  # where configs/ lives in a source checkout
STAGES = ("models", "rm", "judge", "rl", "eval", "report")
DESCRIPTIONS = {
    "models": "prepare the built-in models",
    "rm": "train the reward model",
    "judge": "train the independent judge",
    "rl": "RL the policy",
    "eval": "evaluate base and RL policy",
    "report": "write the report",
}


class StageError(RuntimeError):
    """A stage failed or is not available in this install; the message says which and why."""


def find_config(path: str) -> Path:
    """``path`` as given, else relative to the repository (so the demo runs from any folder)."""
    for candidate in (Path(path), REPO_ROOT / path):
        if candidate.exists():
            return candidate
    raise ValueError(f"config file {path} not found (looked in {Path.cwd()} and {REPO_ROOT})")


def outputs(out: Path) -> dict[str, Path]:
    """Each stage's completion marker."""
    return {"rm": out / "rm" / "moslim_run.json", "judge": out / "judge" / "moslim_run.json",
            "rl": out / "rl" / "moslim_run.json", "eval": out / "eval" / "metrics.json",
            "report": out / "report.md"}


def _check_marker(stage: str, marker: Path) -> None:
    if not marker.exists():
        raise StageError(f"stage {stage!r} finished without writing {marker}")


def _rl_base_policy(cfg: DemoConfig) -> str | None:
    """The RL run's starting policy: evaluated as the "before RL" control."""
    try:
        from moslim.config import load_config
        from moslim.policy.train import RLConfig

        return load_config(RLConfig, find_config(cfg.rl.config), cfg.rl.overrides).policy.model
    except ValueError as err:
        log.warning("could not read the RL config's starting policy (%s); eval uses its own base_policy", err)
        return None


def stage_commands(cfg: DemoConfig, out: Path) -> dict[str, Callable[[], None]]:
    marker = outputs(out)

    def models() -> None:
        from moslim import models as builtins

        for name in cfg.models:
            builtins.prepare(name)

    from moslim.config import load_config

    def reward_model(stage: str, section: StageSection) -> None:
        from moslim.reward.config import RewardTrainConfig
        from moslim.reward.train import train_reward_model

        config = load_config(RewardTrainConfig, find_config(section.config),
                             [*section.overrides, f"output_dir={out / stage}"])
        train_reward_model(config)
        _check_marker(stage, marker[stage])

    def rl() -> None:
        from moslim.policy.train import RLConfig, train_policy

        config = load_config(RLConfig, find_config(cfg.rl.config), [
            *cfg.rl.overrides, f"train.output_dir={out / 'rl'}", f"reward.model={out / 'rm'}"])
        config.check()
        config.check_inputs()
        train_policy(config)
        _check_marker("rl", marker["rl"])

    def evaluate() -> None:
        from moslim.evaluation.runner import EvalConfig, run_evaluation

        base = _rl_base_policy(cfg)
        judge = [f"judge={out / 'judge'}"] if cfg.judge is not None else []
        wiring = [f"policy={out / 'rl' / 'final'}", f"reward_model={out / 'rm'}", *judge,
                  f"out={out / 'eval'}", *([f"base_policy={base}"] if base else [])]
        run_evaluation(load_config(EvalConfig, find_config(cfg.eval.config), [*cfg.eval.overrides, *wiring]))
        _check_marker("eval", marker["eval"])

    def report() -> None:
        from moslim.evaluation.report import write_report

        write_report(out / "eval", out, rl_run=out / "rl" / "moslim_run.json",
                     stages=read_stages(out).get("stages"), title="moslim demo")

    return {"models": models, "rm": lambda: reward_model("rm", cfg.rm),
            "judge": lambda: reward_model("judge", cfg.judge), "rl": rl, "eval": evaluate, "report": report}


def is_off(stage: str, cfg: DemoConfig) -> bool:
    """A stage the config switches off (``judge: null``)."""
    return stage == "judge" and cfg.judge is None


def is_done(stage: str, cfg: DemoConfig, out: Path) -> bool:
    if stage == "models":
        from moslim import models as builtins

        return all(builtins.is_prepared(name) for name in cfg.models)
    if stage == "report":
        return False  # cheap, and its stage table must be current
    return outputs(out)[stage].exists()


def read_stages(out: Path) -> dict[str, Any]:
    path = out / "stages.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"stages": {}}


def write_stages(out: Path, record: dict[str, Any]) -> None:
    tmp = out / ".stages.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / "stages.json")


def run_demo(cfg: DemoConfig, force: str | None = None,
             announce: Callable[[int, str, str, bool], None] | None = None,
             finished: Callable[[str, Path], None] | None = None) -> dict[str, Any]:
    """Run the stages in order; return the ``stages.json`` record (also on failure, then re-raise).

    ``force`` names a stage to redo together with every stage after it (their outputs are deleted
    first). ``announce(index, stage, description, status)`` is called before each stage (status: "run",
    "reused", or "off" for a stage the config switches off),
    ``finished(stage, out)`` after each stage that ran (the CLI prints its results there).
    """
    if force is not None and force not in STAGES:
        raise ValueError(f"--force {force!r}: unknown stage; stages: {', '.join(STAGES)}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    record = read_stages(out)
    record["out"] = str(out)
    redo = set(STAGES[STAGES.index(force):]) if force else set()
    for stage in redo - {"models", "report"}:
        folder = outputs(out)[stage].parent
        log.info("--force %s: removing %s", force, folder)
        shutil.rmtree(folder, ignore_errors=True)
    commands = stage_commands(cfg, out)
    for i, stage in enumerate(STAGES, 1):
        entry = record["stages"].get(stage, {})
        if is_off(stage, cfg):
            if announce:
                announce(i, stage, DESCRIPTIONS[stage], "off")
            record["stages"][stage] = {"status": "off"}
            continue
        skipped = stage not in redo and is_done(stage, cfg, out)
        if announce:
            announce(i, stage, DESCRIPTIONS[stage], "reused" if skipped else "run")
        if skipped:
            entry["status"] = "reused"  # `seconds` keeps the time of the run that made it
            record["stages"][stage] = entry
            continue
        start, cpu_start = time.perf_counter(), usage.cpu_seconds()
        per_stage = usage.reset_peak_rss()  # stages run in-process: each its own peak where the kernel allows
        try:
            commands[stage]()
        except BaseException as err:
            record["stages"][stage] = {"status": "failed", "seconds": round(time.perf_counter() - start, 1),
                                       "error": str(err) or type(err).__name__}
            write_stages(out, record)
            raise
        # CPU seconds next to wall time: on a shared machine the wall time says little on its own.
        record["stages"][stage] = {"status": "ran", "seconds": round(time.perf_counter() - start, 1),
                                   "cpu_seconds": round(usage.cpu_seconds() - cpu_start, 1),
                                   "peak_rss_mib": round(usage.peak_rss_mib()),
                                   "peak_rss_since": "stage start" if per_stage else "process start"}
        write_stages(out, record)
        usage.release_free_memory()  # the stage's models are garbage now: free them, pages and all
        if finished:
            finished(stage, out)
    record["total_seconds"] = round(sum(s.get("seconds") or 0 for s in record["stages"].values()), 1)
    record["peak_rss_mib"] = round(usage.process_peak_rss_mib())  # this process: the stages it ran
    write_stages(out, record)
    return record
