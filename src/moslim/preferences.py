"""Preferences: target levels for a subset of the objectives, and how they reach the policy.

A preference names some objectives and a target level for each; the others are unconstrained
(mask 0). It is rendered into the policy's system message and can be parsed back from it.

Shapes: b = batch, k = objectives.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from moslim.objectives import ObjectiveSet


@dataclass(frozen=True)
class Preference:
    """Target levels for some objectives, e.g. ``{"helpfulness": 4, "verbosity": 1}``."""

    targets: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, targets: Mapping[str, int] | None = None, /, **kw: int) -> Preference:
        merged = dict(targets or {}, **kw)
        return cls(tuple(sorted((str(k), int(v)) for k, v in merged.items())))

    def as_dict(self) -> dict[str, int]:
        return dict(self.targets)

    def __contains__(self, name: object) -> bool:
        return any(n == name for n, _ in self.targets)

    def __len__(self) -> int:
        return len(self.targets)

    def validate(self, objectives: ObjectiveSet, where: str = "") -> Preference:
        """Raise ValueError for an unknown objective or a level out of range; return self."""
        prefix = f"{where}: " if where else ""
        for name, level in self.targets:
            if name not in objectives:
                raise ValueError(
                    f"{prefix}unknown objective {name!r} in preference; "
                    f"valid objectives: {', '.join(objectives.names)}"
                )
            objectives[name].check_level(level, where)
        return self

    # -- text forms -----------------------------------------------------------------------------
    def to_string(self) -> str:
        """``"helpfulness=4,verbosity=1"`` (the CLI's ``--prefer`` form); ``""`` for no targets."""
        return ",".join(f"{n}={v}" for n, v in self.targets)

    @classmethod
    def parse(cls, text: str, objectives: ObjectiveSet | None = None) -> Preference:
        """Parse ``"helpfulness=4,verbosity=1"`` (or a JSON object) into a Preference.

        An objective named twice is an error (which level was meant?), as is a level that is not an integer.
        """
        text = text.strip()
        if text.startswith("{"):
            try:
                pairs = json.loads(text, object_pairs_hook=list)
            except (json.JSONDecodeError, RecursionError) as err:
                raise ValueError(f"preference {text!r:.80} is not valid JSON: {err}") from None
            if not isinstance(pairs, list):
                raise ValueError(f"preference {text!r:.80} should be a JSON object {{objective: level}}")
        else:
            pairs = []
            for part in filter(None, (p.strip() for p in text.split(","))):
                name, sep, value = part.partition("=")
                if not sep or not re.fullmatch(r"-?[0-9]+", value.strip()):
                    raise ValueError(
                        f"preference part {part!r} should look like 'objective=level', e.g. 'verbosity=1'"
                    )
                pairs.append((name.strip(), int(value)))
        targets: dict[str, int] = {}
        for name, level in pairs:
            if name in targets:
                raise ValueError(f"preference {text!r:.80} names {name!r} twice; give each objective one level")
            if isinstance(level, bool) or not isinstance(level, int):
                raise ValueError(f"preference {text!r:.80}: the level of {name!r} must be an integer, got {level!r}")
            targets[name] = level
        pref = cls.of(targets)
        return pref.validate(objectives) if objectives is not None else pref


def to_tensors(
    preferences: Sequence[Preference], objectives: ObjectiveSet
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``targets`` (b, k) long and ``mask`` (b, k) float; unnamed objectives get 0 / 0."""
    targets = torch.zeros(len(preferences), len(objectives), dtype=torch.long)
    mask = torch.zeros(len(preferences), len(objectives), dtype=torch.float32)
    for b, pref in enumerate(preferences):
        for name, level in pref.targets:
            i = objectives.index(name)
            targets[b, i] = objectives.objectives[i].check_level(level)
            mask[b, i] = 1.0
    return targets, mask


# -- sampling and grids -----------------------------------------------------------------------
class PreferenceSampler:
    """Seeded sampler of preferences for RL.

    ``num_named`` is how many objectives a preference names: an int, or ``(low, high)`` drawn
    uniformly (inclusive). ``objective_weights`` optionally gives per objective a weight for being
    named (default 1 each; drawn without replacement in proportion, an objective with weight 0 is never
    named). ``level_weights`` optionally gives per objective a weight per level (default uniform over levels).
    """

    def __init__(
        self,
        objectives: ObjectiveSet,
        num_named: int | tuple[int, int] = (1, 2),
        level_weights: Mapping[str, Sequence[float]] | None = None,
        seed: int = 0,
        objective_weights: Mapping[str, float] | None = None,
    ):
        low, high = (num_named, num_named) if isinstance(num_named, int) else tuple(num_named)
        objective_weights = dict(objective_weights or {})
        for name, weight in objective_weights.items():
            objectives.index(name)  # an unknown name raises, listing the valid ones
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0 <= weight < float("inf"):
                raise ValueError(f"objective_weights[{name!r}] must be a finite number >= 0, got {weight!r}")
        nameable = [n for n in objectives.names if objective_weights.get(n, 1.0) > 0]
        if not 0 <= low <= high <= len(nameable):
            raise ValueError(
                f"num_named={num_named!r} must lie within 0-{len(nameable)} "
                f"(the objectives that can be named) with low <= high"
            )
        level_weights = dict(level_weights or {})
        for name, weights in level_weights.items():
            n = objectives[name].num_levels
            if len(weights) != n or any(w < 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(
                    f"level_weights[{name!r}] must be {n} non-negative weights with a positive sum, "
                    f"got {list(weights)}"
                )
        self.objectives = objectives
        self.low, self.high = low, high
        self.level_weights = level_weights
        self.objective_weights = objective_weights
        self.rng = random.Random(seed)

    def _names(self, count: int) -> list[str]:
        if not self.objective_weights:  # uniform: the same draws as before the option existed
            return self.rng.sample(self.objectives.names, count)
        pool = {n: float(self.objective_weights.get(n, 1.0)) for n in self.objectives.names}
        names = []
        for _ in range(count):  # weighted, without replacement
            candidates = [n for n, w in pool.items() if w > 0]
            name = self.rng.choices(candidates, weights=[pool[n] for n in candidates])[0]
            names.append(name)
            pool[name] = 0.0
        return names

    def sample(self) -> Preference:
        count = self.rng.randint(self.low, self.high)
        names = self._names(count)
        targets = {}
        for name in names:
            n = self.objectives[name].num_levels
            weights = self.level_weights.get(name)
            targets[name] = self.rng.choices(range(n), weights=weights)[0] if weights else self.rng.randrange(n)
        return Preference.of(targets)

    def sample_many(self, n: int) -> list[Preference]:
        return [self.sample() for _ in range(n)]

    def sample_contrast(self, k: int) -> list[Preference]:
        """``k`` preferences that name the same objectives (one :meth:`sample`'s) at different levels.

        Each named objective's levels run through a seeded permutation of the levels it can take (weight > 0
        in ``level_weights``), repeated when ``k`` exceeds them: with ``k`` equal to an objective's level count,
        the ``k`` preferences ask for every level once. An objective with one allowed level keeps it.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        names = [name for name, _ in self.sample().targets]
        levels = {}
        for name in names:
            weights = self.level_weights.get(name) or [1.0] * self.objectives[name].num_levels
            allowed = [level for level, weight in enumerate(weights) if weight > 0]
            self.rng.shuffle(allowed)
            levels[name] = [allowed[j % len(allowed)] for j in range(k)]
        return [Preference.of({name: levels[name][j] for name in names}) for j in range(k)]


def single_objective_grid(objectives: ObjectiveSet, names: Iterable[str] | None = None) -> list[Preference]:
    """Each objective alone at each of its levels."""
    names = list(names) if names is not None else objectives.names
    return [Preference.of({n: lvl}) for n in names for lvl in range(objectives[n].num_levels)]


def pair_grid(
    objectives: ObjectiveSet,
    objective_pairs: Iterable[tuple[str, str]] | None = None,
    levels: Mapping[str, Sequence[int]] | None = None,
) -> list[Preference]:
    """Every pair of objectives (or the given ones) on a grid of levels (default: all levels)."""
    objective_pairs = list(objective_pairs) if objective_pairs is not None else \
        list(itertools.combinations(objectives.names, 2))
    levels = dict(levels or {})
    grid = []
    for a, b in objective_pairs:
        la = levels.get(a, range(objectives[a].num_levels))
        lb = levels.get(b, range(objectives[b].num_levels))
        grid += [Preference.of({a: x, b: y}) for x in la for y in lb]
    return grid


# -- rendering into prompts -------------------------------------------------------------------
DEFAULT_HEADER = (
    "You are a helpful assistant. Shape your answer to the user's preferences below "
    "(level 0 is the lowest)."
)
DEFAULT_LINE = "- {name}: level {level} of 0-{max_level} ({description})"
DEFAULT_EMPTY = "You are a helpful assistant."


PLACEMENTS = ("system", "user")


@dataclass(frozen=True)
class PromptTemplate:
    """How a preference becomes text the policy reads: a system message, or the close of the user's turn.

    ``line`` is formatted once per named objective with ``name``, ``level``, ``max_level``, ``description`` (the
    level's one-line description) and ``Description`` (the same, capitalised). ``placement`` says where the lines
    go: ``"system"`` (the header and the lines are the system message; ``empty`` when nothing is named) or
    ``"user"`` (they close the user's last turn after a blank line, and the system message is ``empty``; a small
    instruct model follows an instruction there more often: docs/study.md, "Where the preference is written").
    A line with ``{name}`` and ``{level}`` parses back without the objectives; one without them (a plain
    instruction such as ``"({Description}.)"``) parses back by matching every line the objectives can render.
    """

    header: str = DEFAULT_HEADER
    line: str = DEFAULT_LINE
    empty: str = DEFAULT_EMPTY
    placement: str = "system"
    _regex: re.Pattern | None = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.placement not in PLACEMENTS:
            raise ValueError(f"prompt template placement {self.placement!r}: expected one of {', '.join(PLACEMENTS)}")
        keys = {"{name}", "{level}"}
        if not all(k in self.line for k in keys) and not any(k in self.line for k in ("{description}",
                                                                                          "{Description}")):
            raise ValueError(f"prompt template line {self.line!r} must contain {{name}} and {{level}}, or the "
                             f"level's {{description}} (or {{Description}}), so the preference can be parsed back")
        regex = None
        if all(k in self.line for k in keys):
            pattern = re.escape(self.line)
            groups = {"name": r"(?P<name>[a-z][a-z0-9_]*)", "level": r"(?P<level>\d+)",
                      "max_level": r"\d+", "description": r".*?", "Description": r".*?"}
            for key, group in groups.items():
                pattern = pattern.replace(re.escape("{" + key + "}"), group, 1)
            regex = re.compile("^" + pattern + "$")
        object.__setattr__(self, "_regex", regex)

    def _line(self, objective, level: int) -> str:
        description = objective.level_descriptions[level]
        return self.line.format(name=objective.name, level=level, max_level=objective.num_levels - 1,
                                description=description, Description=description[:1].upper() + description[1:])

    def render(self, preference: Preference, objectives: ObjectiveSet) -> str:
        """The preference's text (the system message, or what closes the user's turn); ``empty`` for none."""
        preference.validate(objectives)
        if not preference.targets:
            return self.empty
        # Objectives appear in the objective set's order, so one preference always renders the same.
        lines = [self.header] if self.header else []
        for obj in objectives:
            if obj.name in preference:
                lines.append(self._line(obj, preference.as_dict()[obj.name]))
        return "\n".join(lines)

    def system_message(self, preference: Preference, objectives: ObjectiveSet) -> str:
        return self.render(preference, objectives) if self.placement == "system" else self.empty

    def user_suffix(self, preference: Preference, objectives: ObjectiveSet) -> str:
        """What the user's last turn ends with ("" where the preference goes in the system message or is empty)."""
        if self.placement != "user" or not preference.validate(objectives).targets:
            return ""
        return "\n\n" + self.render(preference, objectives)

    def strip(self, question: str, preference: Preference, objectives: ObjectiveSet) -> str:
        """``question`` without the preference text this template closed it with (the question the user asked)."""
        suffix = self.user_suffix(preference, objectives)
        return question[:-len(suffix)] if suffix and question.endswith(suffix) else question

    def parse(self, text: str, objectives: ObjectiveSet | None = None) -> Preference:
        """The preference in ``text`` (a system message, or a user turn's closing lines)."""
        if self._regex is None and objectives is None:
            raise ValueError(f"prompt template line {self.line!r} names no {{name}} / {{level}}: parsing it back "
                             f"needs the objectives")
        known = {} if objectives is None else {self._line(o, lv): (o.name, lv) for o in objectives
                                                 for lv in range(o.num_levels)}
        targets = {}
        for row in text.splitlines():
            row = row.strip()
            if row in known:
                name, level = known[row]
                targets[name] = level
            elif self._regex is not None and (match := self._regex.match(row)):
                targets[match["name"]] = int(match["level"])
        pref = Preference.of(targets)
        return pref.validate(objectives) if objectives is not None else pref

    def to_dict(self) -> dict[str, str]:
        return {"header": self.header, "line": self.line, "empty": self.empty, "placement": self.placement}


def build_messages(
    question: str | list[dict], preference: Preference, objectives: ObjectiveSet,
    template: PromptTemplate | None = None,
) -> list[dict]:
    """Chat messages for the policy: the system message, then the user's turn(s), the last one closed by the
    preference where the template places it there."""
    template = template or PromptTemplate()
    turns = [{"role": "user", "content": question}] if isinstance(question, str) else list(question)
    turns = [t for t in turns if t.get("role") != "system"]
    suffix = template.user_suffix(preference, objectives)
    if suffix:
        last = max((i for i, t in enumerate(turns) if t.get("role") == "user"), default=None)
        if last is None:
            raise ValueError("the prompt template writes the preference into the user's turn, but the chat has none")
        turns[last] = {**turns[last], "content": turns[last]["content"] + suffix}
    return [{"role": "system", "content": template.system_message(preference, objectives)}, *turns]


def preference_from_messages(messages: list[dict], objectives: ObjectiveSet,
                             template: PromptTemplate | None = None) -> Preference:
    """Parse the preference back out of a chat: its system message, or the user's last turn where the template
    places the preference there (empty if there is none)."""
    template = template or PromptTemplate()
    role = "user" if template.placement == "user" else "system"
    text = next((m["content"] for m in reversed(messages) if m.get("role") == role), "")
    return template.parse(text, objectives)
