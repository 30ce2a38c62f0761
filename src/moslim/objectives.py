"""Objectives and the set of objectives a reward model and a policy share.

An *objective* is a name such as ``"verbosity"`` with a fixed number of *levels* (integer classes
0..C-1), each with a one-line description that the policy's prompt quotes. A level is always the integer; its
text is a *level description* (``Objective.level_descriptions``, the list under ``levels:`` in the YAML, which
keeps that key because every saved reward model and policy stores its objectives in this form).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Objective:
    """One objective: ``name``, one description per level (index = level), and an optional summary line."""

    name: str
    level_descriptions: tuple[str, ...]
    description: str = ""

    @property
    def num_levels(self) -> int:
        return len(self.level_descriptions)

    def check_level(self, level: Any, where: str = "") -> int:
        """Return ``level`` as int, or raise ValueError naming the valid range."""
        prefix = f"{where}: " if where else ""
        if isinstance(level, bool) or not isinstance(level, int):
            if isinstance(level, float) and level.is_integer():
                level = int(level)
            elif isinstance(level, str) and level.strip().lstrip("-").isdigit():
                level = int(level)
            else:
                raise ValueError(
                    f"{prefix}level {level!r} for {self.name!r} is not an integer "
                    f"(expected 0-{self.num_levels - 1})"
                )
        if not 0 <= level < self.num_levels:
            raise ValueError(
                f"{prefix}level {level} for {self.name!r} is out of range 0-{self.num_levels - 1}"
            )
        return level


class ObjectiveSet:
    """An ordered set of objectives; the order fixes the head index ``k`` everywhere."""

    def __init__(self, objectives: list[Objective] | tuple[Objective, ...]):
        if not objectives:
            raise ValueError("an objective set needs at least one objective")
        seen: set[str] = set()
        for obj in objectives:
            if obj.name in seen:
                raise ValueError(f"objective {obj.name!r} appears twice")
            seen.add(obj.name)
        self.objectives = tuple(objectives)
        self._index = {o.name: i for i, o in enumerate(self.objectives)}

    # -- access -------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def num_levels(self) -> torch.Tensor:
        """(k,) long: each head's number of levels."""
        return torch.tensor([o.num_levels for o in self.objectives], dtype=torch.long)

    @property
    def max_classes(self) -> int:
        return max(o.num_levels for o in self.objectives)

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise ValueError(
                f"unknown objective {name!r}; valid objectives: {', '.join(self.names)}"
            ) from None

    def __getitem__(self, name: str) -> Objective:
        return self.objectives[self.index(name)]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[Objective]:
        return iter(self.objectives)

    def __len__(self) -> int:
        return len(self.objectives)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectiveSet) and self.objectives == other.objectives

    def __repr__(self) -> str:
        parts = ", ".join(f"{o.name}:{o.num_levels}" for o in self.objectives)
        return f"ObjectiveSet({parts})"

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "objectives": [
                {"name": o.name, "description": o.description, "levels": list(o.level_descriptions)}
                for o in self.objectives
            ]
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> ObjectiveSet:
        if not isinstance(data, Mapping) or "objectives" not in data:
            raise ValueError(f"{source}: expected a mapping with an 'objectives' list")
        items = data["objectives"]
        if not isinstance(items, list) or not items:
            raise ValueError(f"{source}: 'objectives' must be a non-empty list")
        return cls([_objective_from_dict(item, i, source) for i, item in enumerate(items)])

    @classmethod
    def from_yaml(cls, path: str | Path, with_factors: bool = False) -> ObjectiveSet:
        """The file's objectives; ``with_factors``: followed by its ``factors`` (the labels a reward model's
        factored head trains on, see :mod:`moslim.reward.model`), which data files may carry
        as labels too. Other sections (the labelling spec) are not read."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML: {err}") from None
        objectives = cls.from_dict(data, source=str(path))
        if not with_factors:
            return objectives
        factors = factors_from_dict(data, source=str(path))
        return cls(list(objectives) + list(factors or ()))

    def extended(self, other: ObjectiveSet | None) -> ObjectiveSet:
        """This set followed by ``other``'s objectives (a name in both is an error)."""
        return self if other is None else ObjectiveSet(list(self) + list(other))

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


def factors_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> ObjectiveSet | None:
    """An objectives file's ``factors`` section (same form as ``objectives``), or None when it has none."""
    if not isinstance(data, Mapping) or data.get("factors") is None:
        return None
    return ObjectiveSet.from_dict({"objectives": data["factors"]}, source=f"{source} (factors)")


def _objective_from_dict(item: Any, i: int, source: str) -> Objective:
    if not isinstance(item, Mapping):
        raise ValueError(f"{source}: objective #{i} must be a mapping with 'name' and 'levels'")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"{source}: objective #{i}: field 'name' must be a lowercase identifier "
            f"(letters, digits, '_'), got {name!r}"
        )
    unknown = set(item) - {"name", "levels", "description"}
    if unknown:
        raise ValueError(
            f"{source}: objective {name!r}: unknown field(s) {sorted(unknown)}; "
            "expected 'name', 'levels', 'description'"
        )
    levels = item.get("levels")
    if not isinstance(levels, list) or len(levels) < 2:
        raise ValueError(
            f"{source}: objective {name!r}: field 'levels' must be a list of at least 2 "
            f"one-line descriptions (one per level), got {levels!r}"
        )
    for j, text in enumerate(levels):
        if not isinstance(text, str) or not text.strip() or "\n" in text.strip():
            raise ValueError(
                f"{source}: objective {name!r}: field 'levels' item {j} must be a one-line string, "
                f"got {text!r}"
            )
    description = item.get("description", "")
    if not isinstance(description, str):
        raise ValueError(f"{source}: objective {name!r}: field 'description' must be a string")
    return Objective(name=name, level_descriptions=tuple(t.strip() for t in levels), description=description)
