"""The reward model's training loss: masked cross-entropy over the heads, with options.

# b = batch, k = objectives (heads), c = classes (padded to the largest head)

``labels`` (b, k) holds a level per head, or ``IGNORE`` (-100) where an example has no label for that
head: such entries add nothing to the loss, so a masked head gets exactly zero gradient from them.
Each head's loss is a (weighted) mean over its labelled rows; the total sums the heads, so one head's
gradient scale does not depend on how many objectives there are.

Options: ``label_smoothing`` (spread over the head's own classes, never the padding), ``ordinal_weight``
(adds the squared earth mover's distance between the predicted and the label's cumulative
distributions, which charges a prediction two levels off more than one level off), ``class_weights``
(k, c) for imbalance.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from moslim.reward.mapping import valid_class_mask

IGNORE = -100


def per_head_losses(logits: torch.Tensor, labels: torch.Tensor, num_levels: torch.Tensor, *,
                    label_smoothing: float = 0.0, ordinal_weight: float = 0.0,
                    class_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (b, k, c), labels (b, k) -> (loss per head (k,), labelled rows per head (k,))."""
    b, k, c = logits.shape
    valid = valid_class_mask(num_levels.to(logits.device), c)  # (k, c)
    labelled = labels != IGNORE  # (b, k)
    target = labels.clamp(min=0)
    logp = torch.log_softmax(logits.float(), dim=-1).masked_fill(~valid, 0.0)  # (b, k, c); 0 on padding
    onehot = torch.nn.functional.one_hot(target, c).float()  # (b, k, c)
    smooth = valid.float() / num_levels.to(logits.device)[:, None].float()  # (k, c) uniform on the head
    q = (1 - label_smoothing) * onehot + label_smoothing * smooth
    row_loss = -(q * logp).sum(-1)  # (b, k)
    if ordinal_weight:
        cdf_p = logp.exp().masked_fill(~valid, 0.0).cumsum(-1)
        cdf_y = onehot.cumsum(-1)
        row_loss = row_loss + ordinal_weight * ((cdf_p - cdf_y) ** 2 * valid).sum(-1)
    weight = labelled.float()
    if class_weights is not None:
        weight = weight * class_weights.to(logits.device).gather(1, target.T).T  # (b, k)
    total = weight.sum(0)  # (k,)
    losses = (row_loss * weight).sum(0) / total.clamp(min=1e-12)
    return torch.where(total > 0, losses, torch.zeros_like(losses)), labelled.sum(0)


def reward_loss(logits: torch.Tensor, labels: torch.Tensor, num_levels: torch.Tensor, **options) -> torch.Tensor:
    """The scalar training loss: the sum over heads of each head's mean loss over its labelled rows."""
    losses, _ = per_head_losses(logits, labels, num_levels, **options)
    return losses.sum()


def balanced_class_weights(labels: torch.Tensor, num_levels: torch.Tensor,
                           balance: Sequence[bool] | None = None) -> torch.Tensor:
    """labels (n, k) -> weights (k, c): n_i / (C_i * count_ij), so each level weighs the same in total.

    Levels absent from the data get weight 0 (they contribute no rows anyway). A head whose ``balance``
    entry is False keeps weight 1 on every level (its plain mean loss).
    """
    k, c = len(num_levels), int(num_levels.max())
    weights = torch.zeros(k, c)
    for i in range(k):
        if balance is not None and not balance[i]:
            weights[i] = 1.0
            continue
        column = labels[:, i]
        column = column[column != IGNORE]
        counts = torch.bincount(column, minlength=c).float()
        present = counts > 0
        weights[i, present] = len(column) / (int(num_levels[i]) * counts[present])
    return weights


def upper_log_odds(logits: torch.Tensor, heads: torch.Tensor, num_levels: torch.Tensor) -> torch.Tensor:
    """logits (b, k, c), heads (b,) -> (b,): log P(level >= C/2) - log P(level < C/2) on each row's head.

    For a two-level head this is logit 1 - logit 0, the Bradley-Terry score of a binary classifier.
    """
    rows = logits[torch.arange(logits.shape[0], device=logits.device), heads].float()  # (b, c)
    c = rows.shape[-1]
    levels = torch.arange(c, device=logits.device)[None, :]
    n = num_levels.to(logits.device)[heads][:, None]  # (b, 1)
    upper = (levels >= (n + 1) // 2) & (levels < n)
    lower = levels < (n + 1) // 2
    neg = torch.finfo(rows.dtype).min
    return torch.logsumexp(rows.masked_fill(~upper, neg), -1) - torch.logsumexp(rows.masked_fill(~lower, neg), -1)


def pairwise_loss(chosen: torch.Tensor, rejected: torch.Tensor, heads: torch.Tensor,
                  num_levels: torch.Tensor) -> tuple[torch.Tensor, float]:
    """chosen, rejected logits (b, k, c), heads (b,) -> (mean -log sigmoid(s_chosen - s_rejected), accuracy).

    ``s`` is :func:`upper_log_odds` on the head of the objective each pair is about.
    """
    margin = upper_log_odds(chosen, heads, num_levels) - upper_log_odds(rejected, heads, num_levels)
    return -torch.nn.functional.logsigmoid(margin).mean(), float((margin > 0).float().mean())
