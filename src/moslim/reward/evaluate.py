"""Evaluating a reward model: per-head classification metrics and pairwise accuracy on preference pairs.

# n = examples, k = objectives (heads), c = classes (padded to the largest head)

Per head, over the examples labelled for it: accuracy, within-one accuracy (|predicted - label| <= 1),
macro-F1 over the head's levels, expected calibration error (top-class confidence, 10 equal-width
bins), Spearman between the expected level sum_j j p_j and the label, and the confusion matrix
(also as a PNG). Pairwise accuracy: a pair speaks to one objective; the head ranks chosen above
rejected when its expected level is higher (ties count one half).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from moslim.data.schema import Example, PreferencePair
from moslim.objectives import ObjectiveSet
from moslim.reward.losses import IGNORE

log = logging.getLogger(__name__)


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, num_levels: int) -> torch.Tensor:
    """(C, C) long: rows are labels, columns predictions."""
    flat = labels * num_levels + predicted
    return torch.bincount(flat, minlength=num_levels * num_levels).reshape(num_levels, num_levels)


def macro_f1(confusion: torch.Tensor) -> float:
    """Mean F1 over the levels that occur as a label or a prediction."""
    tp = confusion.diag().double()
    support, predicted = confusion.sum(1).double(), confusion.sum(0).double()
    present = (support + predicted) > 0
    f1 = 2 * tp / (support + predicted).clamp(min=1)
    return float(f1[present].mean()) if present.any() else float("nan")


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 10) -> float:
    """probs (n, c), labels (n,): sum over bins of |accuracy - confidence| weighted by the bin's share."""
    confidence, predicted = probs.max(-1)
    correct = (predicted == labels).double()
    edges = torch.linspace(0, 1, bins + 1)
    index = torch.bucketize(confidence, edges[1:-1], right=True)  # bin j holds (edges[j], edges[j+1]]
    error = 0.0
    for j in range(bins):
        in_bin = index == j
        if in_bin.any():
            error += in_bin.double().mean() * (correct[in_bin].mean() - confidence[in_bin].double().mean()).abs()
    return float(error)


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    from scipy.stats import spearmanr

    if len(x) < 2 or x.unique().numel() < 2 or y.unique().numel() < 2:
        return float("nan")
    return float(spearmanr(x.numpy(), y.numpy()).statistic)


def head_metrics(probs: torch.Tensor, labels: torch.Tensor, objectives: ObjectiveSet) -> dict[str, dict[str, Any]]:
    """probs (n, k, c), labels (n, k) with IGNORE for missing -> {objective: metrics}."""
    results: dict[str, dict[str, Any]] = {}
    for i, objective in enumerate(objectives):
        keep = labels[:, i] != IGNORE
        c_i = objective.num_levels
        p = probs[keep, i, :c_i].double()
        y = labels[keep, i]
        if len(y) == 0:
            results[objective.name] = {"n": 0}
            continue
        predicted = p.argmax(-1)
        confusion = confusion_matrix(predicted, y, c_i)
        expected = (p * torch.arange(c_i, dtype=p.dtype)).sum(-1)
        results[objective.name] = {
            "n": int(len(y)),
            "accuracy": float((predicted == y).double().mean()),
            "within_one": float(((predicted - y).abs() <= 1).double().mean()),
            "macro_f1": macro_f1(confusion),
            "ece": expected_calibration_error(p, y),
            "spearman": spearman(expected, y.double()),
            "confusion": confusion.tolist(),
        }
    return results


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor, pairs: list[PreferencePair],
                      objectives: ObjectiveSet) -> dict[str, dict[str, Any]]:
    """chosen, rejected probs (n, k, c) -> {objective: {"n", "accuracy"}} for the objectives pairs name."""
    levels = torch.arange(chosen.shape[-1], dtype=chosen.dtype)
    gap = ((chosen - rejected) * levels).sum(-1)  # (n, k): expected level of chosen minus rejected
    results: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(p.objective for p in pairs):
        rows = torch.tensor([j for j, p in enumerate(pairs) if p.objective == name])
        g = gap[rows, objectives.index(name)]
        wins = (g > 0).double() + 0.5 * (g == 0).double()
        results[name] = {"n": int(len(rows)), "accuracy": float(wins.mean())}
    return results


def plot_confusion(confusion: list[list[int]], objective: str, path: str | os.PathLike) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = torch.tensor(confusion)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(matrix), 1.0 + 0.6 * len(matrix)))
    ax.imshow(matrix, cmap="Blues")
    for (row, col), value in zip(torch.cartesian_prod(torch.arange(len(matrix)), torch.arange(len(matrix))).tolist(),
                                 matrix.flatten().tolist()):
        ax.text(col, row, str(value), ha="center", va="center",
                color="white" if value > matrix.max() / 2 else "black")
    ax.set_xlabel("predicted level")
    ax.set_ylabel("label")
    ax.set_title(objective)
    ax.set_xticks(range(len(matrix)))
    ax.set_yticks(range(len(matrix)))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate_reward_model(model: Any, data: str | os.PathLike | list[Example] | None = None,
                          pairs: str | os.PathLike | list[PreferencePair] | None = None,
                          out_dir: str | os.PathLike | None = None, *, batch_size: int = 32,
                          max_length: int | None = None, device: str | None = None) -> dict[str, Any]:
    """Evaluate a reward model (a saved folder or a RewardScorer) on labelled examples and/or pairs.

    Returns ``{"heads": {objective: metrics}, "pairs": {objective: {"n", "accuracy"}},
    "pairs_by_source": {source: {objective: {"n", "accuracy"}}}}``. With
    ``out_dir``: writes ``metrics.json`` and ``confusion_<objective>.png`` there.
    """
    from moslim.reward.data import label_tensor, load_examples, load_pairs
    from moslim.reward.scorer import RewardScorer

    scorer = model if isinstance(model, RewardScorer) else RewardScorer.from_pretrained(
        model, device=device, batch_size=batch_size, max_length=max_length)
    objectives = scorer.objectives
    heads = scorer.model.training_objectives  # a factored objective's factors are scored too
    results: dict[str, Any] = {"heads": {}, "pairs": {}}
    if data is not None:
        examples = data if isinstance(data, list) else load_examples(data, heads)
        probs = scorer.score([e.prompt for e in examples], [e.response for e in examples], with_factors=True)
        results["heads"] = head_metrics(probs, label_tensor(examples, heads, strict=False), heads)
    if pairs is not None:
        pairs = pairs if isinstance(pairs, list) else load_pairs(pairs, objectives)
        if pairs:
            prompts = [p.prompt for p in pairs]
            chosen = scorer.score(prompts, [p.chosen for p in pairs])
            rejected = scorer.score(prompts, [p.rejected for p in pairs])
            results["pairs"] = pairwise_accuracy(chosen, rejected, pairs, objectives)
            results["pairs_by_source"] = {}
            for source in dict.fromkeys(p.source for p in pairs):
                rows = [j for j, p in enumerate(pairs) if p.source == source]
                results["pairs_by_source"][source] = pairwise_accuracy(
                    chosen[rows], rejected[rows], [pairs[j] for j in rows], objectives)
    if out_dir is not None:
        write_results(results, out_dir)
    return results


def write_results(results: dict[str, Any], out_dir: str | os.PathLike) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, metrics in results["heads"].items():
        if metrics.get("n"):
            plot_confusion(metrics["confusion"], name, out / f"confusion_{name}.png")
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(results, indent=2), encoding="utf-8")
    os.replace(tmp, out / "metrics.json")
    log.info("wrote %s", out / "metrics.json")
