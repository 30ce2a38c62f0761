"""Examples and preference pairs for the reward model: reading, encoding, batching.

# n = examples, k = objectives (heads)

Paths may start with ``moslim:`` to name a file shipped inside the package
(``moslim:assets/demo/rm_train.jsonl.gz``), so configs work from any working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from moslim.data.schema import Example, PreferencePair
from moslim.objectives import ObjectiveSet
from moslim.paths import resolve_path
from moslim.reward.encoding import Encoded, PairEncoder
from moslim.reward.losses import IGNORE


def read_objectives(path: str | Path) -> tuple[ObjectiveSet, dict[str, Any] | None]:
    """An objectives file -> (objective set, its labelling spec or None)."""
    path = resolve_path(path)
    if not path.exists():
        raise ValueError(f"objectives file {path} does not exist")
    objectives = ObjectiveSet.from_yaml(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    labelling = data.get("labelling") if isinstance(data, dict) else None
    return objectives, labelling


def read_factors(path: str | Path) -> ObjectiveSet | None:
    """An objectives file's ``factors`` section (a reward model's factored head trains on them), or None."""
    from moslim.objectives import factors_from_dict

    path = resolve_path(path)
    return factors_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")), source=str(path))


def subsample(items: list, limit: int | None, seed: int = 0) -> list:
    """At most ``limit`` items, a seeded random subset kept in file order (files are often grouped by source,
    so the first ``limit`` rows could miss a whole source and its objectives)."""
    if not limit or limit >= len(items):
        return items
    keep = sorted(torch.randperm(len(items), generator=torch.Generator().manual_seed(seed))[:limit].tolist())
    return [items[i] for i in keep]


def load_examples(path: str | Path, objectives: ObjectiveSet | None, limit: int | None = None,
                  seed: int = 0) -> list[Example]:
    """Labelled examples (any source :func:`moslim.data.read_examples` reads), checked against the objectives.

    ``limit``: keep a seeded random subset of that many (see :func:`subsample`); ``objectives=None``: text only."""
    from moslim.data import read_examples

    return subsample(read_examples(_existing(path), objectives), limit, seed)


def load_pairs(path: str | Path, objectives: ObjectiveSet | None = None, limit: int | None = None,
               seed: int = 0) -> list[PreferencePair]:
    """Preference pairs; each pair's objective must be one of the reward model's heads."""
    from moslim.data import read_pairs

    path = _existing(path)
    pairs = read_pairs(path, objectives)
    if objectives is not None:
        for pair in pairs:
            if pair.objective not in objectives:
                raise ValueError(f"{path}: pair {pair.id!r} names objective {pair.objective!r}, which the reward "
                                 f"model does not have; valid: {', '.join(objectives.names)}")
    return subsample(pairs, limit, seed)


def _existing(path: str | Path) -> Path:
    resolved = resolve_path(path)
    if not resolved.exists():
        raise ValueError(f"data file {resolved} does not exist")
    return resolved


def label_tensor(examples: list[Example], objectives: ObjectiveSet, strict: bool = True) -> torch.Tensor:
    """(n, k) long: each example's level per head, IGNORE where it has no label.

    ``strict=False`` skips labels for names outside ``objectives`` (a factor's labels, for a model
    without that factored head); otherwise such a label is an error."""
    labels = torch.full((len(examples), len(objectives)), IGNORE, dtype=torch.long)
    for row, example in enumerate(examples):
        for name, level in example.labels.items():
            if strict or name in objectives:
                labels[row, objectives.index(name)] = level
    return labels


def encode_examples(examples: list[Example], encoder: PairEncoder) -> list[Encoded]:
    return [encoder.encode(e.prompt, e.response) for e in examples]
