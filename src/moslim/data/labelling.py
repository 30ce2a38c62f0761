"""Labelling: raw signals (a judge score, a word count, a human verdict) into levels.

The labelling spec lives in the objectives YAML, next to the objective set, under ``labelling:``, so
the reward model's training data, the evaluation data and the judging of the policy's generations
all go through the same bins. Per objective it lists rules; the first rule whose signal a record
carries gives the level:

.. code-block:: yaml

    labelling:
      verbosity:
        - signal: words             # exact judge: whitespace words of the response
          bins: fixed
          edges: [15, 40, 70]       # level = number of edges strictly below the value
      helpfulness:
        - signal: alpaca_eval_preference
          bins: quantile            # edges fitted on the training split, stored, reused unchanged
          edges: [1.0000103, 1.0012448]
        - signal: xstest_verdict
          table: {safe/full_refusal: 0}

Bins are upper-inclusive: with ``edges: [15, 40, 70]`` 15 words is level 0 and 16 words level 1.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from moslim.objectives import ObjectiveSet, factors_from_dict

WORDS = "words"  # the signal every response carries: its whitespace word count
BIN_KINDS = ("fixed", "quantile")


def word_count(text: str) -> int:
    """Whitespace-separated words, the same count as AlpacaEval's ``n_words``."""
    return len(text.split())


@dataclass(frozen=True)
class Rule:
    """One way to turn a signal into a level: bins over a number, or a table of categories."""

    signal: str
    bins: str | None = None  # "fixed" or "quantile"; None for a table rule
    edges: tuple[float, ...] = ()
    table: Mapping[str, int] = field(default_factory=dict)
    note: str = ""

    def level(self, value: Any) -> int | None:
        """The level for ``value``, or None when a table does not list it (the label stays missing)."""
        if self.bins is None:
            return self.table.get(str(value))
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ValueError(f"signal {self.signal!r} needs a number for its bins, got {value!r}")
        return bisect.bisect_left(self.edges, value)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"signal": self.signal}
        if self.bins is not None:
            out["bins"] = self.bins
            out["edges"] = [_plain_number(e) for e in self.edges]
        else:
            out["table"] = dict(self.table)
        if self.note:
            out["note"] = self.note
        return out


class LabellingSpec:
    """Per objective, the rules that give its level; objectives without rules are never labelled."""

    def __init__(self, rules: Mapping[str, Sequence[Rule]]):
        self.rules = {name: tuple(rs) for name, rs in rules.items()}

    def __contains__(self, objective: object) -> bool:
        return objective in self.rules

    def label(self, signals: Mapping[str, Any], response: str | None = None) -> dict[str, int]:
        """Levels for every objective some rule can judge from ``signals`` (plus the response's words)."""
        if response is not None and WORDS not in signals:
            signals = {**signals, WORDS: word_count(response)}
        labels: dict[str, int] = {}
        for objective, rules in self.rules.items():
            for rule in rules:
                if rule.signal in signals and signals[rule.signal] is not None:
                    level = rule.level(signals[rule.signal])
                    if level is not None:
                        labels[objective] = level
                        break
        return labels

    def check(self, objectives: ObjectiveSet, where: str = "labelling") -> LabellingSpec:
        """Raise ValueError when a rule names an unknown objective or can give a level out of range."""
        for objective, rules in self.rules.items():
            obj = objectives[objective] if objective in objectives else None
            if obj is None:
                raise ValueError(f"{where}: unknown objective {objective!r}; "
                                 f"valid objectives: {', '.join(objectives.names)}")
            for i, rule in enumerate(rules):
                rule_where = f"{where}.{objective}[{i}]"
                if rule.bins is not None and len(rule.edges) != obj.num_levels - 1:
                    raise ValueError(f"{rule_where}: {len(rule.edges)} edges make {len(rule.edges) + 1} "
                                     f"levels, but {objective!r} has {obj.num_levels}")
                for key, level in rule.table.items():
                    obj.check_level(level, f"{rule_where}.table[{key!r}]")
        return self

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        return {name: [r.to_dict() for r in rules] for name, rules in self.rules.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "labelling") -> LabellingSpec:
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected a mapping from objective to a list of rules")
        rules: dict[str, list[Rule]] = {}
        for objective, items in data.items():
            if isinstance(items, Mapping):
                items = [items]
            if not isinstance(items, list) or not items:
                raise ValueError(f"{where}.{objective}: expected a non-empty list of rules")
            rules[objective] = [_rule_from_dict(item, f"{where}.{objective}[{i}]") for i, item in enumerate(items)]
        return cls(rules)


def _rule_from_dict(item: Any, where: str) -> Rule:
    if not isinstance(item, Mapping) or not isinstance(item.get("signal"), str):
        raise ValueError(f"{where}: a rule is a mapping with a 'signal' name and 'bins'+'edges' or 'table'")
    unknown = set(item) - {"signal", "bins", "edges", "table", "note"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; "
                         "expected 'signal', 'bins', 'edges', 'table', 'note'")
    if ("table" in item) == ("bins" in item):
        raise ValueError(f"{where}: give either 'bins' (with 'edges') or 'table', not both or neither")
    if "table" in item:
        table = item["table"]
        if not isinstance(table, Mapping):
            raise ValueError(f"{where}: 'table' must map signal values to levels, got {table!r}")
        return Rule(signal=item["signal"], table={str(k): v for k, v in table.items()},
                    note=item.get("note", ""))
    if item["bins"] not in BIN_KINDS:
        raise ValueError(f"{where}: bins {item['bins']!r} is not one of {', '.join(BIN_KINDS)}")
    edges = item.get("edges")
    if not isinstance(edges, list) or not all(isinstance(e, int | float) for e in edges):
        raise ValueError(f"{where}: 'edges' must be a list of numbers, got {edges!r}")
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"{where}: 'edges' must increase strictly, got {edges}")
    return Rule(signal=item["signal"], bins=item["bins"], edges=tuple(edges), note=item.get("note", ""))


def fit_quantile_edges(values: Iterable[float], num_levels: int) -> tuple[float, ...]:
    """Edges that split ``values`` into ``num_levels`` bins of about equal count (fit on train only).

    Edge i is the value at rank ``round(i * n / num_levels) - 1`` of the sorted values, so with
    upper-inclusive bins each level holds ~n/num_levels of the fitted values (ties can shift that).
    """
    ordered = sorted(values)
    if len(ordered) < num_levels:
        raise ValueError(f"cannot fit {num_levels} quantile bins on {len(ordered)} values")
    edges = [ordered[max(0, round(i * len(ordered) / num_levels) - 1)] for i in range(1, num_levels)]
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"quantile edges {edges} are not distinct: too many ties for {num_levels} levels")
    return tuple(edges)


def load_labelling(path: str | Path, objectives: ObjectiveSet | None = None) -> LabellingSpec:
    """Read the ``labelling:`` section of an objectives YAML (checked against its objective set)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, Mapping) or "labelling" not in data:
        raise ValueError(f"{path}: no 'labelling' section (expected next to 'objectives')")
    spec = LabellingSpec.from_dict(data["labelling"], where=f"{path}: labelling")
    objectives = objectives or ObjectiveSet.from_dict(data, source=str(path))
    factors = factors_from_dict(data, source=str(path))  # the labels a factored head trains on: labelled too
    missing = [f for f in factors or () if f.name not in objectives]
    if missing:
        objectives = objectives.extended(ObjectiveSet(missing))
    return spec.check(objectives, where=f"{path}: labelling")


def judge_level(text: str, objective: str, spec: LabellingSpec) -> int:
    """An exact judge: the level of ``objective`` computed from the text alone (its word count)."""
    for rule in spec.rules.get(objective, ()):
        if rule.signal == WORDS:
            return rule.level(word_count(text))
    raise ValueError(f"the labelling spec has no '{WORDS}' rule for {objective!r}, so no exact judge; "
                     f"objectives with one: {', '.join(_exact_objectives(spec)) or 'none'}")


def verbosity_level(text: str, spec: LabellingSpec) -> int:
    """The verbosity level of any text: its word count through the spec's stored bins."""
    return judge_level(text, "verbosity", spec)


def _exact_objectives(spec: LabellingSpec) -> list[str]:
    return [name for name, rules in spec.rules.items() if any(r.signal == WORDS for r in rules)]


def _plain_number(x: float) -> float | int:
    return int(x) if isinstance(x, int) or (isinstance(x, float) and x.is_integer()) else float(x)
