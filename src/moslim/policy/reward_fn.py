"""The MOSLIM reward as a TRL reward callable.

# b = completions in the batch (prompts x generations), k = objectives, c = classes (padded)

TRL calls ``reward(prompts=..., completions=..., preference=[...], log_metric=..., **columns)``
once per batch; every dataset column arrives repeated per generation. The preference column holds
``Preference.to_string()`` ("helpfulness=2,verbosity=1"; "" = nothing named). The reward model sees
only the plain question and answer: the system message that carries the preference is dropped.

With ``trl.multi_objective_aggregation: normalize_then_sum`` (GDPO) TRL takes one reward function per
objective (:meth:`MoslimReward.per_objective`): each objective's mapped reward on the rows that name it, None
on the others, normalised within each group of generations before the objectives are summed, so one
objective's spread inside a group cannot drown another's. The reward model scores each batch once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from moslim.data.schema import prompt_text
from moslim.objectives import ObjectiveSet
from moslim.preferences import Preference, PromptTemplate, to_tensors
from moslim.reward.mapping import RunningStats, map_rewards, valid_class_mask

log = logging.getLogger(__name__)


class Scorer(Protocol):
    """What the reward needs from a reward model: its objectives and probs (b, k, c) for plain text."""

    objectives: ObjectiveSet

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor: ...


def completion_text(completion: str | list[dict]) -> str:
    """A TRL completion (plain text, or a list of chat messages) as the answer's text."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if m.get("role", "assistant") == "assistant")


def objective_stats(probs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                    num_levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per objective over the rows that name it: hit rate, mean |E[level] - target|, row count.

    probs (b, k, c), targets (b, k), mask (b, k), num_levels (k,) -> three (k,) tensors; an
    objective no row names gets NaN for the first two.
    """
    b, k, c = probs.shape
    valid = valid_class_mask(num_levels, c).to(probs.dtype)  # (k, c)
    masked = probs * valid  # padded classes never win the argmax nor move the expectation
    hits = (masked.argmax(-1) == targets).to(probs.dtype)  # (b, k)
    levels = torch.arange(c, dtype=probs.dtype)
    expected = (masked * levels).sum(-1) / masked.sum(-1).clamp(min=1e-8)  # (b, k)
    distance = (expected - targets.to(probs.dtype)).abs()
    count = mask.sum(0)  # (k,)
    denom = torch.where(count > 0, count, torch.full_like(count, float("nan")))
    return (hits * mask).sum(0) / denom, (distance * mask).sum(0) / denom, count


class MoslimReward:
    """Mapped multi-head reward for TRL: ``(prompts, completions, preference, **columns) -> list[float]``.

    ``method`` / ``mapping_options`` go to :func:`moslim.reward.mapping.map_rewards` (for
    ``stats="running"`` a :class:`RunningStats` is created unless one is passed as ``running``).
    Each call logs ``moslim/<objective>/hit_rate`` and ``moslim/<objective>/level_distance``
    through TRL's ``log_metric`` hook when TRL provides it; ``last_metrics`` keeps them too.
    """

    def __init__(self, scorer: Scorer, objectives: ObjectiveSet | None = None,
                 method: str | Callable[..., torch.Tensor] = "zscore",
                 mapping_options: dict[str, Any] | None = None,
                 preference_column: str = "preference", template: PromptTemplate | None = None):
        objectives = objectives if objectives is not None else scorer.objectives
        scorer_objectives = getattr(scorer, "objectives", None)
        if scorer_objectives is not None and scorer_objectives.names != objectives.names:
            raise ValueError(
                f"the reward model scores objectives {scorer_objectives.names} but the policy is trained for "
                f"{objectives.names}; use the reward model's objective set"
            )
        self.scorer = scorer
        self.objectives = objectives
        self.method = method
        self.mapping_options = dict(mapping_options or {})
        if self.mapping_options.get("stats") == "running" and "running" not in self.mapping_options:
            self.mapping_options["running"] = RunningStats(len(objectives))
        self.preference_column = preference_column
        self.template = template or PromptTemplate()
        self.last_metrics: dict[str, float] = {}
        self._last: tuple | None = None  # (batch key, (probs, targets, mask)) of the last batch scored
        self.__name__ = "moslim"  # TRL names the reward's log columns after __name__

    def preferences(self, column: Sequence[str | Preference | None]) -> list[Preference]:
        out = []
        for i, value in enumerate(column):
            if isinstance(value, Preference):
                out.append(value.validate(self.objectives, f"{self.preference_column}[{i}]"))
            else:
                try:
                    out.append(Preference.parse(value or "", self.objectives))
                except ValueError as err:
                    raise ValueError(f"column {self.preference_column!r} row {i}: {err}") from None
        return out

    def __call__(self, prompts: list, completions: list, log_metric: Callable[[str, float], None] | None = None,
                 **columns: Any) -> list[float]:
        column = self._column(columns)
        probs, targets, mask = self._scored(prompts, completions, column, log_metric)
        rewards = map_rewards(probs, targets, mask, self.objectives.num_levels, method=self.method,
                              **self.mapping_options)
        return rewards.tolist()

    def per_objective(self, names: Sequence[str] | None = None) -> list[ObjectiveReward]:
        """One TRL reward function per objective in ``names`` (default: all), sharing this reward's scoring."""
        names = list(self.objectives.names if names is None else names)
        unknown = [name for name in names if name not in self.objectives.names]
        if unknown:
            raise ValueError(f"no objective {unknown} in the reward model's objectives {self.objectives.names}")
        return [ObjectiveReward(self, self.objectives.names.index(name)) for name in names]

    def _scored(self, prompts: list, completions: list, column: Sequence, log_metric=None):
        """(probs, targets, mask) for a batch; the reward model runs once per batch however many objective
        functions ask (TRL calls them one after another with the same lists)."""
        if len(column) != len(completions) or len(prompts) != len(completions):
            raise ValueError(f"got {len(prompts)} prompts, {len(completions)} completions and "
                             f"{len(column)} preferences; expected one of each per completion")
        texts = [prompt_text(p) for p in prompts]  # system message dropped
        responses = [completion_text(c) for c in completions]  # the reward model's word for them
        key = (tuple(texts), tuple(responses), tuple(str(v) for v in column))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        preferences = self.preferences(column)
        # the question the user asked: the system message is dropped, and the preference where it closes the turn
        questions = [self.template.strip(q, pref, self.objectives) for q, pref in zip(texts, preferences)]
        targets, mask = to_tensors(preferences, self.objectives)  # (b, k), (b, k)
        with torch.no_grad():
            probs = self.scorer.score(questions, responses).detach().float().cpu()  # (b, k, c)
        self._log(probs, targets, mask, self.objectives.num_levels, log_metric)
        self._last = (key, (probs, targets, mask))
        return probs, targets, mask

    def _column(self, columns: dict) -> Sequence:
        if self.preference_column not in columns:
            raise ValueError(
                f"the MOSLIM reward needs the dataset column {self.preference_column!r} (the preference as "
                f"'objective=level,...'); columns given: {sorted(k for k in columns if k != 'trainer_state')}"
            )
        return columns[self.preference_column]

    def _log(self, probs, targets, mask, num_levels, log_metric) -> None:
        hit_rate, distance, count = objective_stats(probs, targets, mask, num_levels)
        metrics = {}
        for i, name in enumerate(self.objectives.names):
            if count[i] > 0:  # only objectives some row named; TRL averages what each batch logged
                metrics[f"moslim/{name}/hit_rate"] = hit_rate[i].item()
                metrics[f"moslim/{name}/level_distance"] = distance[i].item()
        self.last_metrics = metrics
        if log_metric is not None:
            for key, value in metrics.items():
                log_metric(key, value)


class ObjectiveReward:
    """One objective of a :class:`MoslimReward` as its own TRL reward function: the mapped reward of that
    objective alone on each row whose preference names it, None on the rows that do not (TRL leaves those out
    of the objective's group statistics). Its ``__name__`` is ``moslim_<objective>``, TRL's log column."""

    def __init__(self, parent: MoslimReward, index: int):
        self.parent = parent
        self.index = index
        self.name = parent.objectives.names[index]
        self.__name__ = f"moslim_{self.name}"

    def __call__(self, prompts: list, completions: list, log_metric: Callable[[str, float], None] | None = None,
                 **columns: Any) -> list[float | None]:
        parent = self.parent
        probs, targets, mask = parent._scored(prompts, completions, parent._column(columns), log_metric)
        only = torch.zeros_like(mask)
        only[:, self.index] = mask[:, self.index]
        rewards = map_rewards(probs, targets, only, parent.objectives.num_levels, method=parent.method,
                              **parent.mapping_options)
        return [value if named else None for value, named in zip(rewards.tolist(), only[:, self.index].tolist())]
