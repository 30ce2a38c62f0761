"""Counts of levels per objective, label coverage, and a histogram PNG."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from moslim.data.schema import Example
from moslim.objectives import ObjectiveSet


def level_counts(examples: Sequence[Example], objectives: ObjectiveSet) -> dict[str, list[int]]:
    """Per objective, the number of examples at each level (index = level)."""
    counts = {o.name: [0] * o.num_levels for o in objectives}
    for ex in examples:
        for name, level in ex.labels.items():
            counts[name][level] += 1
    return counts


def coverage(examples: Sequence[Example], objectives: ObjectiveSet) -> dict[str, float]:
    """Per objective, the fraction of examples that carry its label (the rest mask that head)."""
    n = max(len(examples), 1)
    return {name: sum(c) / n for name, c in level_counts(examples, objectives).items()}


def source_counts(examples: Sequence[Example]) -> Counter:
    """Rows per source family (``alpaca_eval/claude-2`` counts as ``alpaca_eval``)."""
    return Counter(ex.source.split("/")[0] or "(none)" for ex in examples)


def plot_level_histograms(counts: dict[str, list[int]], path: str | Path, title: str = "") -> Path:
    """One bar chart per objective (levels on x, rows on y), saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(counts), figsize=(3.2 * len(counts), 3), squeeze=False)
    for ax, (name, values) in zip(axes[0], counts.items()):
        ax.bar(range(len(values)), values, color="#4c72b0")
        ax.set_title(name)
        ax.set_xlabel("level")
        ax.set_xticks(range(len(values)))
    axes[0][0].set_ylabel("rows")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
