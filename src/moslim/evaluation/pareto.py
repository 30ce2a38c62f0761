"""Pareto fronts and 2-D hypervolume, both for maximisation.

Shapes: n = points, d = objectives (2 for the hypervolume).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when ``a`` is at least as good as ``b`` everywhere and strictly better somewhere."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return bool(np.all(a >= b) and np.any(a > b))


def pareto_front(points: Sequence[Sequence[float]] | np.ndarray) -> list[int]:
    """Indices (ascending) of the points no other point dominates. ``points``: (n, d).

    Equal points do not dominate each other, so duplicates on the front are all kept.
    """
    pts = np.asarray(points, dtype=float)
    if pts.size == 0:
        return []
    if pts.ndim != 2:
        raise ValueError(f"points must be (n, d), got shape {pts.shape}")
    # (n, n): [i, j] is True when point j dominates point i. n is a grid of preferences: small.
    geq = np.all(pts[None, :, :] >= pts[:, None, :], axis=2)
    gt = np.any(pts[None, :, :] > pts[:, None, :], axis=2)
    dominated = np.any(geq & gt, axis=1)
    return [int(i) for i in np.flatnonzero(~dominated)]


def hypervolume_2d(points: Sequence[Sequence[float]] | np.ndarray, reference: Sequence[float]) -> float:
    """Area dominated by ``points`` (n, 2) and bounded below by ``reference`` (2,), maximisation.

    The union of the rectangles [ref_x, x] x [ref_y, y]; points not strictly above the reference
    in both coordinates add nothing. Adding a point never decreases it.
    """
    pts = np.asarray(points, dtype=float).reshape(-1, 2) if len(points) else np.zeros((0, 2))
    ref_x, ref_y = (float(r) for r in reference)
    pts = pts[(pts[:, 0] > ref_x) & (pts[:, 1] > ref_y)]
    # Sweep from the largest x down: each point that rises above the best y so far adds a strip
    # of height (y - best_y) spanning [ref_x, x].
    area, best_y = 0.0, ref_y
    for x, y in sorted(pts.tolist(), key=lambda p: (-p[0], -p[1])):
        if y > best_y:
            area += (x - ref_x) * (y - best_y)
            best_y = y
    return area
