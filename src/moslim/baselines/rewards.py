"""Per-objective rewards from the multi-head reward model, and MORLHF's linear scalarisation of them.

# b = batch, k = objectives (heads), c = classes (padded to the largest head)

The per-objective reward of every baseline is the reward model's head as a 0-1 score: the expected level
under the head's class probabilities, divided by the top level, ``s_i = sum_j j p_ij / (C_i - 1)``. It keeps
the whole distribution (unlike the argmax), has the same range for heads with different numbers of classes,
and is what the evaluation's achieved levels are scaled to, so train-time and test-time scales agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from moslim.reward.mapping import valid_class_mask


def head_scores(probs: torch.Tensor, num_levels: torch.Tensor) -> torch.Tensor:
    """probs (b, k, c), num_levels (k,) -> scores (b, k) in [0, 1]: expected level / top level."""
    b, k, c = probs.shape
    num_levels = torch.as_tensor(num_levels, device=probs.device)
    valid = valid_class_mask(num_levels, c).to(probs.dtype)  # (k, c)
    masked = probs * valid
    levels = torch.arange(c, dtype=probs.dtype, device=probs.device)
    expected = (masked * levels).sum(-1) / masked.sum(-1).clamp(min=1e-8)  # (b, k)
    return expected / (num_levels.to(probs.dtype) - 1).clamp(min=1)


def linear_scalarisation(probs, targets, mask, num_levels, *, weights: Sequence[float]) -> torch.Tensor:
    """MORLHF's reward as a mapping method (``reward.method: moslim.baselines.rewards:linear_scalarisation``).

    ``r = sum_i w_i s_i`` with ``weights`` (k,) one per head (0 for heads left out). The preference's targets
    and mask are ignored: a MORLHF policy is trained for one fixed weight vector. Returns (b,).
    """
    w = torch.as_tensor(list(weights), dtype=probs.dtype, device=probs.device)
    if w.shape != (probs.shape[1],):
        raise ValueError(f"reward.options.weights: expected {probs.shape[1]} weights (one per reward-model head), "
                         f"got {list(weights)}")
    return head_scores(probs, num_levels) @ w


def head_weights(weights: Sequence[float], names: Sequence[str], all_names: Sequence[str]) -> list[float]:
    """Weights over the compared ``names`` -> one weight per reward-model head (0 for the others)."""
    unknown = [n for n in names if n not in all_names]
    if unknown:
        raise ValueError(f"objectives {unknown} are not heads of the reward model (heads: {', '.join(all_names)})")
    by_name = dict(zip(names, weights))
    return [float(by_name.get(n, 0.0)) for n in all_names]
