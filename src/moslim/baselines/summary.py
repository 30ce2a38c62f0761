"""From a method's judged grid points and stage records to ``baseline_run.json``: its front, hypervolume, how well it
follows the request, and its compute.

Achieved value of an objective at a point: the mean judged level over the point's completions divided by the
objective's top level (0-1, as ``moslim eval``'s Pareto figures), so the hypervolume lies in [0, 1] with the
reference point (0, 0) (the lowest level of both objectives).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moslim.baselines.config import BaselineConfig
from moslim.baselines.recipes import read_json
from moslim.data.readers import read_jsonl
from moslim.evaluation.controllability import level_metrics
from moslim.evaluation.pareto import hypervolume_2d, pareto_front
from moslim.preferences import Preference

REFERENCE_POINT = (0.0, 0.0)

# What serving a preference no policy was trained for costs, per method.
SERVE_COST = {"moslim": "none: a new system prompt", "prompt-only": "none: a new system prompt",
              "ric": "none: new desired rewards in the system prompt",
              "morlhf": "a new RL run (one more policy)", "soups": "one weight interpolation (no training)"}


def point_figures(rows: list[dict[str, Any]], judge_of: dict[str, str], num_levels: dict[str, int]) -> dict:
    """Mean achieved level per objective, scaled 0-1 by the top level, over the rows that judge has levels for."""
    achieved = {}
    for name, judge in judge_of.items():
        levels = [r["levels"][judge][name] for r in rows if name in r["levels"].get(judge, {})]
        achieved[name] = sum(levels) / len(levels) / (num_levels[name] - 1) if levels else None
    return achieved


def following(rows: list[dict[str, Any]], judge_of: dict[str, str], resamples: int) -> dict[str, Any]:
    """Per objective: hit rate, mean abs. level error, Spearman and slope of achieved vs the point's target level
    (the MOSLIM levels the grid point maps to), bootstrap over prompts."""
    out = {}
    for name, judge in judge_of.items():
        chosen = [r for r in rows if name in r["levels"].get(judge, {})]
        if not chosen:
            continue
        requested = [Preference.parse(r["targets"]).as_dict()[name] for r in chosen]
        achieved = [r["levels"][judge][name] for r in chosen]
        out[name] = {"judge": judge, "n": len(chosen),
                     **level_metrics(requested, achieved, [r["prompt_id"] for r in chosen], resamples)}
    return out


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0


def compute(method: str, cfg: BaselineConfig, out: Path, record: dict[str, Any],
            points: list[dict[str, Any]]) -> dict[str, Any]:
    """Training runs, steps, CPU / wall seconds, peak RSS, model copies on disk, cost of an untrained preference."""
    train = {k: v for k, v in record.get("stages", {}).items() if v.get("kind") in ("rl", "sft", "data")}
    kept = sorted({str(Path(p["policy"])) for p in points if p.get("policy")} |
                  {p for pt in points for p in pt.get("soup", {}).get("policies", [])})
    result: dict[str, Any] = {
        "training_runs": sum(1 for v in train.values() if v.get("kind") in ("rl", "sft") and not v.get("continued")),
        "rl_steps": sum(v.get("steps") or 0 for v in train.values() if v.get("kind") == "rl"),
        "sft_steps": sum(v.get("steps") or 0 for v in train.values() if v.get("kind") == "sft"),
        "cpu_seconds": round(sum(v.get("cpu_seconds") or 0 for v in train.values()), 1),
        "wall_seconds": round(sum(v.get("seconds") or 0 for v in train.values()), 1),
        "peak_rss_mib": max((v.get("peak_rss_mib") or 0 for v in train.values()), default=None) or None,
        "model_copies": 0 if method == "prompt-only" else len(kept),
        "disk_mib": 0 if method == "prompt-only" else round(sum(folder_bytes(Path(p)) for p in kept) / 2**20, 1),
        "serve_new_preference": SERVE_COST[method],
        "budget": cfg.rl.budget if method in ("morlhf", "soups", "ric") else None,
    }
    interp = [p["interpolation_s"] for p in points if "interpolation_s" in p]
    if interp:
        result["serve_new_preference_s"] = round(sum(interp) / len(interp), 2)
    if method == "morlhf" and train:
        result["serve_new_preference_s"] = round(result["wall_seconds"] / max(1, result["training_runs"]), 1)
    if method == "moslim":
        result.update(moslim_compute(Path(cfg.policy)))
    return result


def moslim_compute(policy: Path) -> dict[str, Any]:
    """MOSLIM's training cost from its RL run (``moslim_run.json`` next to ``final/``) and the demo's stages.json."""
    run = read_json(policy.parent / "moslim_run.json")
    if not run:
        return {"training_runs": 1, "note": f"no moslim_run.json next to {policy}: RL cost unknown"}
    stage = read_json(policy.parent.parent / "stages.json").get("stages", {}).get("rl", {})
    return {"training_runs": 1, "rl_steps": run.get("global_step"), "wall_seconds": run.get("wall_s"),
            "cpu_seconds": stage.get("cpu_seconds"), "peak_rss_mib": stage.get("peak_rss_mib")}


def summarise_run(method: str, cfg: BaselineConfig, out: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The run's ``baseline_run.json`` content (compare reads only this file and the rows it names)."""
    evaluated = read_json(out / "points.json")
    judge_of, num_levels = evaluated["judge_of"], evaluated["num_levels"]
    names = evaluated["objectives"]
    points, all_rows = [], []
    for point in evaluated["points"]:
        rows = read_jsonl(out / "eval" / point["rows"])
        all_rows += rows
        achieved = point_figures(rows, judge_of, num_levels)
        points.append({**point, "n": len(rows), "achieved": [achieved[n] for n in names]})
    xy = [p["achieved"] for p in points if None not in p["achieved"]]
    front = pareto_front(xy) if xy else []
    return {
        "method": method, "out": str(out), "objectives": names, "judge_of": judge_of,
        "judging": evaluated["judging"], "prompts": evaluated["prompts"], "grid_points": cfg.grid.points,
        "generation": vars(cfg.eval.generation), "points": points,
        "front": [xy[i] for i in front], "reference_point": list(REFERENCE_POINT),
        "hypervolume": hypervolume_2d(xy, REFERENCE_POINT) if xy else 0.0,
        "following": following(all_rows, judge_of, cfg.eval.bootstrap_resamples),
        "compute": compute(method, cfg, out, record, evaluated["points"]),
        "stages": record.get("stages", {}),
    }
