"""From judged completions to the numbers in ``metrics.json``.

A *row* is one judged completion: ``{"prompt_id", "preference" ("a=1,b=2"), "sample",
"completion", "levels": {judge_name: {objective: level}}}``. Controllability uses the rows whose
preference names one objective; the Pareto analysis uses the rows of each pair grid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from moslim.evaluation.controllability import (
    METRICS,
    bootstrap_ci,
    level_metrics,
    mean_by_level,
    paired_change,
)
from moslim.evaluation.pareto import hypervolume_2d, pareto_front
from moslim.objectives import ObjectiveSet
from moslim.preferences import Preference

# Achieved levels are scaled to 0-1 by each objective's top level, so the hypervolume of a pair
# lies in [0, 1]; the reference point is the lowest level of both objectives.
REFERENCE_POINT = (0.0, 0.0)


def controllability(
    rows: Sequence[Mapping[str, Any]], objectives: ObjectiveSet, judge_of: Mapping[str, str],
    num_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per objective: metrics of the levels ``judge_of[objective]`` gave on single-objective rows.

    Returns ``{objective: {"judge", "n", "prompts", "by_level": {requested: mean achieved},
    <metric>: {"value", "ci"}}}``; objectives without a judge or without rows are left out.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, judge in judge_of.items():
        chosen = [r for r in rows
                  if _single_target(r, name) is not None and name in r["levels"].get(judge, {})]
        if not chosen:
            continue
        requested = [_single_target(r, name) for r in chosen]
        achieved = [r["levels"][judge][name] for r in chosen]
        groups = [r["prompt_id"] for r in chosen]
        entry: dict[str, Any] = {"judge": judge, "n": len(chosen), "prompts": len(set(groups)),
                                 "num_levels": objectives[name].num_levels}
        entry["by_level"] = {str(k): v for k, v in mean_by_level(requested, achieved).items()}
        entry.update(level_metrics(requested, achieved, groups, num_resamples, confidence, seed))
        out[name] = entry
    return out


def rl_change(
    base_rows: Sequence[Mapping[str, Any]], policy_rows: Sequence[Mapping[str, Any]], judge_of: Mapping[str, str],
    num_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per objective and metric: after RL minus before RL, with a *paired* bootstrap over prompts.

    Both policies answered the same prompts, so each resample draws prompts once and recomputes both
    metrics on them: the interval of the difference is narrower and more honest than comparing two
    separate intervals. Returns ``{objective: {metric: {"value", "ci"}}}``.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, judge in judge_of.items():
        rows = [(label, r) for label, rs in (("base", base_rows), ("policy", policy_rows)) for r in rs
                if _single_target(r, name) is not None and name in r["levels"].get(judge, {})]
        is_policy = np.array([label == "policy" for label, _ in rows])
        if not rows or is_policy.all() or not is_policy.any():
            continue
        requested = [_single_target(r, name) for _, r in rows]
        achieved = [r["levels"][judge][name] for _, r in rows]
        groups = [r["prompt_id"] for _, r in rows]
        out[name] = {}
        for metric, fn in METRICS.items():
            value, ci = paired_change(fn, requested, achieved, is_policy, groups, num_resamples, confidence, seed)
            out[name][metric] = {"value": value, "ci": list(ci)}
    return out


def _single_target(row: Mapping[str, Any], name: str) -> int | None:
    targets = Preference.parse(row["preference"]).as_dict()
    return targets.get(name) if len(targets) == 1 else None


def pair_pareto(
    rows: Sequence[Mapping[str, Any]], objectives: ObjectiveSet, pair: tuple[str, str],
    judge_of: Mapping[str, str], num_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
) -> dict[str, Any] | None:
    """Achieved points of one pair grid, their Pareto front and hypervolume (with a bootstrap interval).

    Each preference naming exactly ``pair`` gives one point: the mean achieved level of each
    objective over its completions, scaled to 0-1 by the objective's top level. None when the
    pair has no rows or no judge for one of its objectives.
    """
    a, b = pair
    if a not in judge_of or b not in judge_of:
        return None
    chosen = [r for r in rows if set(Preference.parse(r["preference"]).as_dict()) == {a, b}
              and a in r["levels"].get(judge_of[a], {}) and b in r["levels"].get(judge_of[b], {})]
    if not chosen:
        return None
    scale = np.array([objectives[a].num_levels - 1, objectives[b].num_levels - 1], dtype=float)
    prefs = sorted({r["preference"] for r in chosen},
                   key=lambda p: sorted(Preference.parse(p).as_dict().items()))
    pref_index = {p: i for i, p in enumerate(prefs)}
    cell = np.array([pref_index[r["preference"]] for r in chosen])  # (n,) grid cell of each row
    achieved = np.array([[r["levels"][judge_of[a]][a], r["levels"][judge_of[b]][b]] for r in chosen],
                        dtype=float) / scale  # (n, 2)

    def points_of(rows_idx: np.ndarray) -> np.ndarray:
        cells = cell[rows_idx]
        return np.array([achieved[rows_idx][cells == i].mean(0) for i in np.unique(cells)])

    points = points_of(np.arange(len(chosen)))
    hv_low, hv_high = bootstrap_ci([r["prompt_id"] for r in chosen],
                                   lambda idx: hypervolume_2d(points_of(idx), REFERENCE_POINT),
                                   num_resamples, confidence, seed)
    return {
        "objectives": [a, b],
        "judges": [judge_of[a], judge_of[b]],
        "points": [{"preference": p, "achieved": [float(x) for x in points[i]]} for i, p in enumerate(prefs)],
        "front": pareto_front(points),
        "hypervolume": {"value": hypervolume_2d(points, REFERENCE_POINT), "ci": [hv_low, hv_high]},
        "reference_point": list(REFERENCE_POINT),
        "scale": "achieved level / top level (0-1)",
    }


def clean_nans(data: Any) -> Any:
    """Replace float nan with None so metrics.json is strict JSON (null = undefined, stated in the report)."""
    if isinstance(data, float) and math.isnan(data):
        return None
    if isinstance(data, dict):
        return {k: clean_nans(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [clean_nans(v) for v in data]
    return data
