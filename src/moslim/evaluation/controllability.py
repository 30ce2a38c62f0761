"""Does the policy hit the level it was asked for? Pure functions over requested / achieved levels.

Every function takes two equal-length sequences of integer levels (one entry per completion):
``requested`` (the preference's target) and ``achieved`` (a judge's verdict on the completion).
Degenerate input (fewer than two completions, or no spread in one of the sequences) gives ``nan``
for the statistics that are undefined there (Spearman, slope), never an exception or a made-up 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import linregress, spearmanr

Levels = Sequence[int] | np.ndarray


def _pair(requested: Levels, achieved: Levels) -> tuple[np.ndarray, np.ndarray]:
    req = np.asarray(requested, dtype=float)
    ach = np.asarray(achieved, dtype=float)
    if req.shape != ach.shape or req.ndim != 1:
        raise ValueError(
            f"requested and achieved must be 1-D and of equal length, got shapes {req.shape} and {ach.shape}"
        )
    return req, ach


def hit_rate(requested: Levels, achieved: Levels) -> float:
    """Fraction of completions whose achieved level equals the requested one (nan when empty)."""
    req, ach = _pair(requested, achieved)
    return float(np.mean(req == ach)) if req.size else math.nan


def mean_abs_error(requested: Levels, achieved: Levels) -> float:
    """Mean |achieved - requested| in levels (nan when empty)."""
    req, ach = _pair(requested, achieved)
    return float(np.mean(np.abs(ach - req))) if req.size else math.nan


def spearman(requested: Levels, achieved: Levels) -> float:
    """Spearman's rank correlation (scipy's; ties get their average rank).

    nan when there are fewer than two completions or either sequence is constant (the rank
    correlation is undefined: a policy that always answers at one level has no ordering to measure).
    """
    req, ach = _pair(requested, achieved)
    if req.size < 2 or np.ptp(req) == 0 or np.ptp(ach) == 0:
        return math.nan
    return float(spearmanr(req, ach).statistic)


def slope(requested: Levels, achieved: Levels) -> float:
    """Least-squares slope of achieved against requested level (1 = perfect tracking, 0 = ignores it).

    nan when fewer than two completions or all requested levels are equal (no slope to fit).
    """
    req, ach = _pair(requested, achieved)
    if req.size < 2 or np.ptp(req) == 0:
        return math.nan
    return float(linregress(req, ach).slope)


METRICS: dict[str, Callable[[Levels, Levels], float]] = {
    "hit_rate": hit_rate,
    "mean_abs_error": mean_abs_error,
    "spearman": spearman,
    "slope": slope,
}


def mean_by_level(requested: Levels, achieved: Levels) -> dict[int, float]:
    """Mean achieved level for each requested level present: the points of a requested-vs-achieved plot."""
    req, ach = _pair(requested, achieved)
    return {int(level): float(ach[req == level].mean()) for level in np.unique(req)}


def bootstrap_ci(
    groups: Sequence[object],
    statistic: Callable[[np.ndarray], float],
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` resampling *groups* (prompts), not rows.

    ``groups[i]`` is the group (prompt id) of row i. Each resample draws as many groups as there
    are, with replacement, and calls ``statistic(rows)`` with the row indices (1-D int array) of the
    drawn groups, repeats included. Completions of one prompt are correlated, so resampling rows
    would give intervals that are too narrow. Resamples where the statistic is nan are dropped;
    ``(nan, nan)`` when all are nan or there are no rows.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be at least 1, got {num_resamples}")
    keys, codes = np.unique(np.asarray([str(g) for g in groups], dtype=object), return_inverse=True)
    if len(keys) == 0:
        return math.nan, math.nan
    rows_of = [np.flatnonzero(codes == g) for g in range(len(keys))]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_resamples):
        drawn = rng.integers(0, len(keys), size=len(keys))
        value = statistic(np.concatenate([rows_of[g] for g in drawn]))
        if not math.isnan(value):
            values.append(value)
    if not values:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def level_metrics(
    requested: Levels,
    achieved: Levels,
    groups: Sequence[object],
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float | list[float]]]:
    """All of :data:`METRICS` with bootstrap intervals over ``groups`` (one prompt id per row).

    Returns ``{metric: {"value": v, "ci": [low, high]}}``.
    """
    req, ach = _pair(requested, achieved)
    if len(groups) != req.size:
        raise ValueError(f"groups has {len(groups)} entries for {req.size} completions")
    out: dict[str, dict[str, float | list[float]]] = {}
    for name, fn in METRICS.items():
        low, high = bootstrap_ci(groups, lambda rows, fn=fn: fn(req[rows], ach[rows]),
                                 num_resamples, confidence, seed)
        out[name] = {"value": fn(req, ach), "ci": [low, high]}
    return out


def paired_change(
    metric: Callable[[Levels, Levels], float], requested: Levels, achieved: Levels, after: Sequence[bool],
    groups: Sequence[object], num_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """``metric(after rows) - metric(before rows)`` and its paired bootstrap interval over ``groups``.

    ``after[i]`` says whether row i is a completion of the new policy (else of the old one); both
    answered the same prompts, so each resample draws prompts once and recomputes both sides on them.
    """
    req, ach = _pair(requested, achieved)
    is_after = np.asarray(after, dtype=bool)
    if is_after.shape != req.shape:
        raise ValueError(f"after has {is_after.size} entries for {req.size} completions")

    def change(rows: np.ndarray) -> float:
        new, old = rows[is_after[rows]], rows[~is_after[rows]]
        return metric(req[new], ach[new]) - metric(req[old], ach[old])

    interval = bootstrap_ci(groups, change, num_resamples, confidence, seed)
    return change(np.arange(req.size)), interval
