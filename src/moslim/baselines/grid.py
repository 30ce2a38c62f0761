"""The preference grid every method is compared on, and the rules that turn one point into each method's input.

# m = compared objectives (2 here: verbosity and harmlessness, the two the demo's judges can measure)

A grid point is a weight vector ``w`` (m,) with ``w_i >= 0`` and ``sum(w) = 1``; the 11 points of the RiC
paper are ``w = (t, 1 - t)`` for ``t = 0, 0.1, ..., 1``. What each method receives for a point:

- MOSLIM and prompt-only: target levels, ``level_i = round_half_up(w_i * (C_i - 1))`` (C_i = levels of
  objective i). Caring more about an objective asks for a higher level of it. Inverse: the middle of the
  weights that round to those levels (:func:`weights_for_levels`).
- MORLHF: the weights themselves, as the linear scalarisation ``r = sum_i w_i s_i`` (``s_i`` = the reward
  model's head i as a 0-1 score, :mod:`moslim.baselines.rewards`).
- Rewarded Soups: the weights as the interpolation coefficients ``lambda = w``.
- RiC: desired rewards through RiC's mapping (its paper, section 3.3): ``R_i = r_max_i`` when ``w_i >= 1/m``,
  else ``R_i = r_min_i + m * w_i * (r_max_i - r_min_i)``; r_min / r_max are the offline data's extremes.
  Inverse for m = 2: the objective below its maximum gives ``w_i = (R_i - r_min_i) / (m (r_max_i - r_min_i))``
  and the other ``1 - w_i``; both at their maximum is ``w = (1/2, 1/2)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from moslim.objectives import ObjectiveSet
from moslim.preferences import Preference

_TOL = 1e-9


def weight_grid(points: int = 11) -> list[tuple[float, float]]:
    """``points`` weight vectors (t, 1 - t), t evenly spaced from 0 to 1 (11 points: steps of 0.1)."""
    if points < 2:
        raise ValueError(f"grid.points must be at least 2 (both ends of the grid), got {points}")
    return [(round(i / (points - 1), 10), round(1 - i / (points - 1), 10)) for i in range(points)]


def spread_indices(points: int, count: int) -> list[int]:
    """``count`` grid indices spread evenly over ``points`` (both ends included): MORLHF's M trained points.

    ``spread_indices(11, 3) == [0, 5, 10]``."""
    if not 1 <= count <= points:
        raise ValueError(f"policies={count}: expected 1 to {points} (the grid's points)")
    if count == 1:
        return [points // 2]
    return sorted({round(i * (points - 1) / (count - 1)) for i in range(count)})


def check_weights(weights: Sequence[float], m: int, where: str = "weights") -> list[float]:
    """``weights`` as a list when it has ``m`` non-negative entries summing to 1, else ValueError."""
    w = [float(x) for x in weights]
    if len(w) != m or any(x < 0 or math.isnan(x) for x in w) or abs(sum(w) - 1) > 1e-6:
        raise ValueError(f"{where}: expected {m} non-negative weights summing to 1, got {list(weights)}")
    return w


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + _TOL))


# -- MOSLIM (and prompt-only): target levels --------------------------------------------------------
def levels_for(weights: Sequence[float], names: Sequence[str], objectives: ObjectiveSet) -> Preference:
    """The MOSLIM preference for a grid point: ``level_i = round_half_up(w_i * (C_i - 1))`` per named objective."""
    w = check_weights(weights, len(names))
    return Preference.of({n: _round_half_up(x * (objectives[n].num_levels - 1)) for n, x in zip(names, w)})


def weights_for_levels(preference: Preference, names: Sequence[str], objectives: ObjectiveSet) -> list[float]:
    """The inverse for two objectives: the middle of the weights ``(t, 1 - t)`` that map to these levels.

    ``level_i`` comes from ``w_i`` in ``[(level_i - 1/2) / (C_i - 1), (level_i + 1/2) / (C_i - 1))``; the two
    intervals are intersected on ``t`` (ends included) and their middle returned, checked by mapping it back.
    Levels no weight vector reaches are an error."""
    if len(names) != 2:
        raise ValueError(f"weights_for_levels inverts the two-objective grid; got objectives {list(names)}")
    targets = preference.validate(objectives).as_dict()
    missing = [n for n in names if n not in targets]
    if missing:
        raise ValueError(f"preference {preference.to_string()!r} names no level for {missing}")
    lo, hi = 0.0, 1.0
    for i, name in enumerate(names):
        top = objectives[name].num_levels - 1
        a, b = (targets[name] - 0.5) / top, (targets[name] + 0.5) / top  # the range of w_i
        if i == 1:
            a, b = 1 - b, 1 - a  # as a range of t = 1 - w_2
        lo, hi = max(lo, a), min(hi, b)
    t = (lo + hi) / 2
    if lo > hi + _TOL or levels_for((t, 1 - t), names, objectives) != preference:  # an interval's open end
        raise ValueError(f"levels {preference.to_string()!r}: no weight vector (t, 1 - t) maps to them")
    return [t, 1 - t]


# -- RiC: desired rewards ---------------------------------------------------------------------------
def ric_desired_rewards(weights: Sequence[float], low: Sequence[float], high: Sequence[float]) -> list[float]:
    """RiC's preference -> desired rewards: the maximum for ``w_i >= 1/m``, else a linear share of the range."""
    m = len(low)
    w = check_weights(weights, m)
    if len(high) != m or any(h < lo for lo, h in zip(low, high)):
        raise ValueError(f"reward range: expected {m} pairs with low <= high, got low={list(low)} high={list(high)}")
    return [h if x >= 1 / m - _TOL else lo + m * x * (h - lo) for x, lo, h in zip(w, low, high)]


def ric_weights(rewards: Sequence[float], low: Sequence[float], high: Sequence[float]) -> list[float]:
    """The inverse of :func:`ric_desired_rewards` for two objectives (the grid's case)."""
    if len(rewards) != 2 or len(low) != 2 or len(high) != 2:
        raise ValueError(f"ric_weights inverts the two-objective mapping; got {len(rewards)} rewards")
    below = [i for i in range(2) if rewards[i] < high[i] - _TOL]
    if not below:
        return [0.5, 0.5]
    if len(below) == 2:
        raise ValueError(f"desired rewards {list(rewards)}: RiC's mapping puts at least one objective at its "
                         f"maximum {list(high)}; these rewards come from no preference")
    i = below[0]
    span = high[i] - low[i]
    w_i = (rewards[i] - low[i]) / (2 * span) if span > 0 else 0.0
    return [w_i, 1 - w_i] if i == 0 else [1 - w_i, w_i]


def ric_system_message(rewards: Mapping[str, float], header: str) -> str:
    """The RiC prompt: the rewards written into the system message, ``<header> Rewards: verbosity 0.53, ...``."""
    return f"{header} Rewards (0-1): " + ", ".join(f"{name} {value:.2f}" for name, value in rewards.items())
