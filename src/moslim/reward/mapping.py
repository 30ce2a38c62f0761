"""The mapping function: class probabilities + requested levels -> one scalar reward.

# b = batch, k = objectives (heads), c = classes (padded to the largest head)

The reward model never sees the preference; it classifies the plain (question, answer). This
module turns its probs (b, k, c) and the preference's targets (b, k) / mask (b, k) into a reward (b,).

Built-in methods (``METHODS``):
- ``zscore`` (the MOSLIM paper's form): ``r = 1/K * sum_i mask_i * (p_i[t_i] - mean_i) / std_i``.
  ``stats`` chooses what mean/std run over: ``"class"`` (head i's own valid classes, the default),
  ``"batch"`` (p_i[t_i] across the named rows of the batch) or ``"running"`` (running statistics
  of p_i[t_i], a :class:`RunningStats` passed as ``running``). ``normalize`` chooses K:
  ``"heads"`` (all k heads, the default) or ``"named"`` (the objectives this row names).
- ``expected_level``: ``-mean_named |E[level_i] - t_i| / (C_i - 1)``, in [-1, 0].
- ``target_logprob``: ``mean_named log p_i[t_i]``.
A user callable with the signature of :func:`map_rewards` (minus ``method``) can stand in for a name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

_EPS = 1e-8


class RunningStats:
    """Per-head running mean / population variance of p_i[t_i] (Chan's parallel update)."""

    def __init__(self, num_heads: int):
        self.count = torch.zeros(num_heads, dtype=torch.float64)
        self.mean = torch.zeros(num_heads, dtype=torch.float64)
        self.m2 = torch.zeros(num_heads, dtype=torch.float64)

    def update(self, values: torch.Tensor, mask: torch.Tensor) -> None:
        """values, mask: (b, k); only entries with mask 1 count."""
        values, mask = values.double(), mask.double()
        n_b = mask.sum(0)
        mean_b = (values * mask).sum(0) / n_b.clamp(min=1)
        m2_b = (((values - mean_b) ** 2) * mask).sum(0)
        total = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * n_b / total.clamp(min=1)
        self.m2 = self.m2 + m2_b + delta**2 * self.count * n_b / total.clamp(min=1)
        self.count = total

    @property
    def std(self) -> torch.Tensor:
        return (self.m2 / self.count.clamp(min=1)).sqrt()

    def state_dict(self) -> dict[str, list[float]]:
        return {"count": self.count.tolist(), "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        for key in ("count", "mean", "m2"):
            setattr(self, key, torch.tensor(state[key], dtype=torch.float64))


def valid_class_mask(num_levels: torch.Tensor, c: int) -> torch.Tensor:
    """(k, c) bool: True where class j < num_levels[i]."""
    return torch.arange(c, device=num_levels.device)[None, :] < num_levels[:, None]


def _gather_target(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (b, k)


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    # std = 0 means the head cannot tell classes apart (or one row only): it contributes 0.
    return torch.where(den > _EPS, num / den.clamp(min=_EPS), torch.zeros_like(num))


def zscore(probs, targets, mask, num_levels, *, stats: str = "class", normalize: str = "heads",
           running: RunningStats | None = None) -> torch.Tensor:
    b, k, c = probs.shape
    target_p = _gather_target(probs, targets)  # (b, k)
    if stats == "class":
        valid = valid_class_mask(num_levels, c).to(probs.dtype)  # (k, c)
        n = num_levels.to(probs.dtype)  # (k,)
        mean = (probs * valid).sum(-1) / n  # (b, k)
        var = (((probs - mean.unsqueeze(-1)) ** 2) * valid).sum(-1) / n
        z = _safe_div(target_p - mean, var.sqrt())
    elif stats == "batch":
        n = mask.sum(0).clamp(min=1)  # (k,)
        mean = (target_p * mask).sum(0) / n
        var = (((target_p - mean) ** 2) * mask).sum(0) / n
        z = _safe_div(target_p - mean, var.sqrt().expand_as(target_p))
    elif stats == "running":
        if running is None:
            raise ValueError("stats='running' needs running=RunningStats(num_heads) to carry the statistics")
        running.update(target_p.detach(), mask)
        mean = running.mean.to(probs.dtype)
        std = running.std.to(probs.dtype)
        z = _safe_div(target_p - mean, std.expand_as(target_p))
    else:
        raise ValueError(f"unknown stats {stats!r}; valid: 'class', 'batch', 'running'")
    return (z * mask).sum(-1) / _denominator(mask, k, normalize)


def _denominator(mask: torch.Tensor, k: int, normalize: str) -> torch.Tensor:
    if normalize == "heads":
        return torch.full((mask.shape[0],), float(k), dtype=mask.dtype, device=mask.device)
    if normalize == "named":
        return mask.sum(-1).clamp(min=1)  # nothing named -> numerator is 0 anyway
    raise ValueError(f"unknown normalize {normalize!r}; valid: 'heads', 'named'")


def expected_level(probs, targets, mask, num_levels) -> torch.Tensor:
    b, k, c = probs.shape
    valid = valid_class_mask(num_levels, c).to(probs.dtype)
    levels = torch.arange(c, dtype=probs.dtype, device=probs.device)
    expected = (probs * valid * levels).sum(-1) / (probs * valid).sum(-1).clamp(min=_EPS)  # (b, k)
    span = (num_levels.to(probs.dtype) - 1).clamp(min=1)  # (k,)
    distance = (expected - targets.to(probs.dtype)).abs() / span
    return -(distance * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def target_logprob(probs, targets, mask, num_levels) -> torch.Tensor:
    logp = _gather_target(probs, targets).clamp(min=1e-12).log()
    return (logp * mask).sum(-1) / mask.sum(-1).clamp(min=1)


MappingFn = Callable[..., torch.Tensor]
METHODS: dict[str, MappingFn] = {
    "zscore": zscore,
    "expected_level": expected_level,
    "target_logprob": target_logprob,
}


def check_method(method: str | MappingFn, options: dict | None = None, where: str = "reward") -> MappingFn:
    """The mapping function for ``method`` (a name from ``METHODS`` or a callable), checked with ``options``
    before any model loads: an unknown name or an option the function does not take gives a ValueError naming
    ``where.method`` / ``where.options``; a built-in method also runs once on a one-row example, so an option
    value it rejects (``stats: median``) is caught too. A user's callable is only bound, not run: a toy input
    need not suit it."""
    import difflib
    import inspect

    if isinstance(method, str):
        if method not in METHODS:
            close = difflib.get_close_matches(method, list(METHODS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{where}.method: unknown mapping method {method!r}{hint} (valid: {', '.join(METHODS)}, "
                             f"or 'package.module:function')")
        fn = METHODS[method]
    else:
        fn = method
    options = dict(options or {})
    if options.get("stats") == "running" and "running" not in options:
        options["running"] = RunningStats(1)
    try:
        inspect.signature(fn).bind(None, None, None, None, **options)
    except TypeError as err:
        raise ValueError(f"{where}.options {sorted(options)}: {err} (the mapping method "
                         f"{getattr(fn, '__name__', fn)!s} takes {_keyword_names(fn)})") from None
    if fn in METHODS.values():
        try:
            fn(torch.full((1, 1, 2), 0.5), torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1), torch.tensor([2]),
               **options)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{where}.options {options}: {err}") from None
    return fn


def _keyword_names(fn) -> str:
    import inspect

    names = [p.name for p in list(inspect.signature(fn).parameters.values())[4:]]
    return ", ".join(names) if names else "no options"


def map_rewards(probs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, num_levels: torch.Tensor,
                method: str | MappingFn = "zscore", **options) -> torch.Tensor:
    """Map probs (b, k, c), targets (b, k), mask (b, k), num_levels (k,) to rewards (b,).

    ``method`` is a name from ``METHODS`` or a callable ``f(probs, targets, mask, num_levels, **options)``.
    Padded classes (j >= num_levels[i]) are ignored. A row with nothing named gets reward 0.
    """
    if probs.dim() != 3:
        raise ValueError(f"probs must be (batch, heads, classes), got shape {tuple(probs.shape)}")
    b, k, c = probs.shape
    if targets.shape != (b, k) or mask.shape != (b, k):
        raise ValueError(
            f"targets and mask must be ({b}, {k}) to match probs {tuple(probs.shape)}, "
            f"got {tuple(targets.shape)} and {tuple(mask.shape)}"
        )
    num_levels = torch.as_tensor(num_levels, device=probs.device)
    if num_levels.shape != (k,) or int(num_levels.max()) > c or int(num_levels.min()) < 1:
        raise ValueError(f"num_levels must be ({k},) with values in 1-{c}, got {num_levels.tolist()}")
    targets = targets.long().to(probs.device)
    mask = mask.to(probs.dtype).to(probs.device)
    # A masked head's target may be any placeholder; clamp so gather stays in range.
    targets = torch.where(mask > 0, targets, torch.zeros_like(targets))
    if bool(((targets >= num_levels) & (mask > 0)).any()):
        raise ValueError(f"a target level is out of range for its head (num_levels={num_levels.tolist()})")
    if isinstance(method, str):
        try:
            fn = METHODS[method]
        except KeyError:
            raise ValueError(f"unknown mapping method {method!r}; valid: {', '.join(METHODS)}") from None
    else:
        fn = method
    return fn(probs, targets, mask, num_levels, **options)
