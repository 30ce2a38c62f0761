"""PNG plots for the report (matplotlib, Agg backend: files, never windows)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {"base": "before RL (prompt only)", "policy": "after RL"}
STYLES = {"base": dict(color="tab:gray", marker="o", linestyle="--"),
          "policy": dict(color="tab:blue", marker="s", linestyle="-")}


def plot_controllability(policies: Mapping[str, Any], source: str, path: Path,
                         order: Sequence[str] = ()) -> Path | None:
    """Requested vs mean achieved level per objective, one panel each (in ``order``), a line per policy."""
    judged = {name for p in policies.values() for name in p["controllability"].get(source, {})}
    objectives = [n for n in order if n in judged] + sorted(judged - set(order))
    if not objectives:
        return None
    fig, axes = plt.subplots(1, len(objectives), figsize=(4 * len(objectives), 3.6), squeeze=False)
    for ax, name in zip(axes[0], objectives):
        top = 1
        for label, entry in policies.items():
            result = entry["controllability"].get(source, {}).get(name)
            if not result:
                continue
            top = result["num_levels"] - 1
            levels = sorted(int(k) for k in result["by_level"])
            rho = result["spearman"]["value"]
            rho_text = "n/a" if rho is None or (isinstance(rho, float) and math.isnan(rho)) else f"{rho:.2f}"
            ax.plot(levels, [result["by_level"][str(k)] for k in levels],
                    label=f"{LABELS.get(label, label)} (Spearman {rho_text})", **STYLES.get(label, {}))
        ax.plot([0, top], [0, top], color="black", linewidth=0.8, alpha=0.5, label="perfect")
        ax.set(title=f"{name} ({result['judge'] if result else source})", xlabel="requested level",
               ylabel="mean achieved level", xlim=(-0.2, top + 0.2), ylim=(-0.2, top + 0.2))
        ax.set_xticks(range(top + 1))
        ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def plot_pareto(policies: Mapping[str, Any], source: str, path: Path) -> Path | None:
    """Achieved points of every pair grid and their Pareto fronts, a panel per pair."""
    pairs = sorted({pair for p in policies.values() for pair in p["pareto"].get(source, {})})
    if not pairs:
        return None
    fig, axes = plt.subplots(1, len(pairs), figsize=(4 * len(pairs), 3.8), squeeze=False)
    for ax, pair in zip(axes[0], pairs):
        for label, entry in policies.items():
            result = entry["pareto"].get(source, {}).get(pair)
            if not result:
                continue
            style = STYLES.get(label, {})
            xs = [p["achieved"][0] for p in result["points"]]
            ys = [p["achieved"][1] for p in result["points"]]
            ax.scatter(xs, ys, color=style.get("color"), marker=style.get("marker", "o"), alpha=0.5, s=18)
            front = sorted((xs[i], ys[i]) for i in result["front"])
            hv = result["hypervolume"]["value"]
            ax.plot(*_staircase(front), color=style.get("color"), linestyle=style.get("linestyle", "-"),
                    label=f"{LABELS.get(label, label)} front (HV {hv:.3f})")
            ax.scatter([x for x, _ in front], [y for _, y in front], s=70, facecolors="none",
                       edgecolors=style.get("color"))
        a, b = pair.split("+")
        ax.set(title=pair, xlabel=f"{a} (achieved / top level)", ylabel=f"{b} (achieved / top level)",
               xlim=(-0.05, 1.05), ylim=(-0.05, 1.05))
        ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def _staircase(front: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """The boundary of the dominated region through front points sorted by x (maximisation)."""
    xs, ys = [], []
    for i, (x, y) in enumerate(front):
        if i:
            xs.append(front[i - 1][0])
            ys.append(y)
        xs.append(x)
        ys.append(y)
    return xs, ys


# Training-curve keys worth a panel, in order; any moslim/<objective>/hit_rate key is added after.
CURVE_KEYS = ("reward", "loss", "kl", "completions/mean_length", "reward_std")


def plot_training_curves(log_history: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """One panel per logged quantity (reward, loss, KL, per-objective hit rate) against the step."""
    keys = [k for k in CURVE_KEYS if any(k in row for row in log_history)]
    keys += sorted({k for row in log_history for k in row if k.startswith("moslim/") and k.endswith("hit_rate")})
    if not keys:
        return None
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        points = [(row.get("step", i), row[key]) for i, row in enumerate(log_history)
                  if isinstance(row.get(key), int | float)]
        steps, values = [p[0] for p in points], [p[1] for p in points]
        ax.plot(steps, values, marker=".", color="tab:blue", alpha=0.5 if len(points) >= 8 else 1.0)
        if len(points) >= 8:  # per-step values of a few prompts are noisy: show the trend too
            window = max(3, len(points) // 6)
            smooth = [sum(values[max(0, i - window + 1):i + 1]) / len(values[max(0, i - window + 1):i + 1])
                      for i in range(len(values))]
            ax.plot(steps, smooth, color="tab:red", label=f"mean of last {window}")
            ax.legend(fontsize=7)
        ax.set(title=key, xlabel="step")
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
