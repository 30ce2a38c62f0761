"""The RL prompts (a preference rendered into each system message) as verl and OpenRLHF datasets.

Both engines apply the policy's chat template to the ``prompt`` / ``input`` chat list themselves, so the
policy sees exactly what ``moslim rl train`` shows it. What the reward needs travels beside the prompt:

- **verl** (Parquet, the columns of verl's ``examples/data_preprocess`` scripts): ``data_source``,
  ``prompt`` (chat messages), ``ability``, ``reward_model: {style, ground_truth}``, ``extra_info``. verl
  calls ``compute_score(data_source, solution_str, ground_truth, extra_info)`` without the prompt, so
  ``extra_info`` carries the plain ``question`` and the ``preference`` (``"verbosity=1"``), and
  ``ground_truth`` repeats the preference (what :mod:`moslim.serve.verl_reward` reads when ``extra_info``
  has none).
- **OpenRLHF** (JSONL, read with ``--data.input_key input --data.label_key label --data.apply_chat_template``):
  ``input`` (chat messages) and ``label``, a JSON string ``{"preferences": {...}, "question": "..."}`` that
  OpenRLHF passes verbatim to the remote reward as ``labels[i]`` (:mod:`moslim.serve.openrlhf_reward`).

Preferences are strings (``Preference.to_string()``, or JSON inside the label) rather than nested
objects: rows name different objectives, and Parquet / ``datasets`` would pad a struct column with nulls.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset

from moslim.preferences import Preference

log = logging.getLogger(__name__)

FORMATS = {"verl": ".parquet", "openrlhf": ".jsonl"}  # format -> the file suffix it is written as
ABILITY = "alignment"  # verl's task category column; verl does not read it when a custom reward is set


def verl_rows(dataset: Dataset, data_source: str = "moslim", split: str = "train") -> list[dict]:
    """RL dataset rows (``id``, ``prompt``, ``preference``, ``question``) -> verl rows."""
    rows = []
    for index, row in enumerate(dataset):
        rows.append({
            "data_source": data_source,
            "prompt": row["prompt"],
            "ability": ABILITY,
            # "rule": a function scores the answer (verl's own scripts use "model" only for a verl-served RM)
            "reward_model": {"style": "rule", "ground_truth": row["preference"]},
            "extra_info": {"split": split, "index": index, "id": row["id"], "question": row["question"],
                           "preference": row["preference"]},
        })
    return rows


def openrlhf_rows(dataset: Dataset) -> list[dict]:
    """RL dataset rows -> OpenRLHF rows: ``input`` (chat), ``label`` (JSON string), ``id``."""
    rows = []
    for row in dataset:
        preference = Preference.parse(row["preference"]).as_dict()
        label = json.dumps({"preferences": preference, "question": row["question"]}, ensure_ascii=False)
        rows.append({"input": row["prompt"], "label": label, "id": row["id"]})
    return rows


def check_output(fmt: str, path: str | Path) -> Path:
    """The output path for ``fmt``, or a ValueError naming the expected suffix / format."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    path = Path(path)
    if path.suffix != FORMATS[fmt]:
        raise ValueError(f"{path}: a {fmt} export is written as {FORMATS[fmt]} (got {path.suffix or 'no suffix'})")
    return path


def write_rows(rows: Sequence[dict], fmt: str, path: str | Path) -> Path:
    """Write ``rows`` as Parquet (verl) or JSONL (OpenRLHF), through a temporary file renamed into place."""
    path = check_output(fmt, path)
    if not rows:
        raise ValueError(f"{path}: nothing to export (no prompts)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if fmt == "verl":
        Dataset.from_list(list(rows)).to_parquet(str(tmp))  # as verl's data_preprocess scripts write it
    else:
        with tmp.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    log.info("exported %d %s rows to %s", len(rows), fmt, path)
    return path


def export_dataset(dataset: Dataset, fmt: str, path: str | Path, data_source: str = "moslim",
                   split: str = "train") -> Path:
    """The RL dataset (``moslim.policy.data.build_rl_dataset``) written for ``fmt``."""
    check_output(fmt, path)
    rows = verl_rows(dataset, data_source, split) if fmt == "verl" else openrlhf_rows(dataset)
    return write_rows(rows, fmt, path)


def dataset_from_config(config) -> Dataset:
    """The RL dataset ``moslim rl train`` would build from an RL config's ``data`` section (same seed, same
    rows). Objectives: ``data.objectives``, else the ``objectives.yaml`` of the folder in ``reward.model``."""
    from moslim.objectives import ObjectiveSet
    from moslim.paths import resolve_path
    from moslim.policy.data import load_template, read_prompt_records, rl_dataset_for

    data = config.data
    if data.objectives is not None:
        objectives = ObjectiveSet.from_yaml(resolve_path(data.objectives))
    else:
        path = Path(config.reward.model) / "objectives.yaml"
        if not path.is_file():
            raise ValueError(f"no objective set: {path} does not exist; set data.objectives=FILE.yaml, or "
                             "reward.model to a folder saved by `moslim rm train`")
        objectives = ObjectiveSet.from_yaml(path)
    records = read_prompt_records(data.prompts)[: data.max_prompts]
    return rl_dataset_for(data, records, objectives, load_template(data.template))
