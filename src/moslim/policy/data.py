"""The RL prompt dataset: each prompt paired with a sampled preference rendered into its system message.

Rows carry ``prompt`` (chat messages: the rendered system message, then the user's turn; TRL applies
the policy's chat template), ``preference`` (``Preference.to_string()``, read by the reward), and
``question`` / ``id`` for logs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from datasets import Dataset

from moslim.data.schema import PromptRecord, prompt_text
from moslim.objectives import ObjectiveSet
from moslim.paths import resolve_path
from moslim.preferences import PreferenceSampler, PromptTemplate, build_messages

log = logging.getLogger(__name__)



def read_prompt_records(path: str | Path) -> list[PromptRecord]:
    """PromptRecord JSONL (``{"id", "prompt", "source", "tags"}``) through the data package's validating reader."""
    from moslim.data import read_prompts

    return list(read_prompts(resolve_path(path)))


def load_template(path: str | Path | None) -> PromptTemplate:
    """A PromptTemplate from YAML (``header``, ``line``, ``empty``, ``placement``), or the default when ``path``
    is None."""
    if path is None:
        return PromptTemplate()
    import yaml

    data = yaml.safe_load(resolve_path(path).read_text(encoding="utf-8")) or {}
    unknown = set(data) - {"header", "line", "empty", "placement"}
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; expected 'header', 'line', 'empty', "
                         f"'placement'")
    try:
        return PromptTemplate(**data)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def save_template(template: PromptTemplate, path: str | Path) -> None:
    import yaml

    Path(path).write_text(yaml.safe_dump(template.to_dict(), sort_keys=False), encoding="utf-8")


def build_rl_dataset(records: Sequence[PromptRecord], objectives: ObjectiveSet, *,
                     num_named: int | tuple[int, int] = (1, 2), preferences_per_prompt: int = 1,
                     seed: int = 0, template: PromptTemplate | None = None,
                     level_weights: Mapping[str, Sequence[float]] | None = None,
                     objective_weights: Mapping[str, float] | None = None,
                     level_contrast: bool = False) -> Dataset:
    """Pair each prompt with ``preferences_per_prompt`` seeded preferences (one row each).

    ``objective_weights`` gives per objective a weight for being named, ``level_weights`` per objective a
    sampling weight per level (see PreferenceSampler).

    ``level_contrast``: a prompt's rows name the same objectives at different levels
    (:meth:`PreferenceSampler.sample_contrast`), and the rows stay together, in a seeded order of whole prompts:
    a trainer that keeps the dataset's order (TRL's ``shuffle_dataset=False``) then asks the same question at
    several levels in one step.

    The same seed gives the same rows, so a resumed run sees the data it was trained on.
    """
    if preferences_per_prompt < 1:
        raise ValueError(f"preferences_per_prompt must be >= 1, got {preferences_per_prompt}")
    sampler = PreferenceSampler(objectives, num_named=num_named, level_weights=level_weights, seed=seed,
                                objective_weights=objective_weights)
    template = template or PromptTemplate()
    if level_contrast:
        order = list(range(len(records)))
        sampler.rng.shuffle(order)
        records = [records[i] for i in order]
    rows: dict[str, list] = {"id": [], "prompt": [], "preference": [], "question": []}
    for record in records:
        preferences = (sampler.sample_contrast(preferences_per_prompt) if level_contrast
                       else sampler.sample_many(preferences_per_prompt))
        for preference in preferences:
            rows["id"].append(record.id)
            rows["prompt"].append(build_messages(record.prompt, preference, objectives, template))
            rows["preference"].append(preference.to_string())
            rows["question"].append(prompt_text(record.prompt))
    log.info("RL dataset: %d rows from %d prompts", len(rows["id"]), len(records))
    return Dataset.from_dict(rows)


def rl_dataset_for(data, records: Sequence[PromptRecord], objectives: ObjectiveSet,
                   template: PromptTemplate | None = None) -> Dataset:
    """:func:`build_rl_dataset` with the sampling options of an RL config's ``data`` section."""
    return build_rl_dataset(records, objectives, num_named=(data.num_named[0], data.num_named[-1]),
                            preferences_per_prompt=data.preferences_per_prompt, seed=data.seed, template=template,
                            level_weights=data.level_weights, objective_weights=data.objective_weights,
                            level_contrast=data.level_contrast)
