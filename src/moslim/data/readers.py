"""Reading and validating examples, preference pairs and prompts from files and datasets.

Sources: JSONL (``.jsonl``, ``.jsonl.gz``), JSON (a list of objects), CSV, Parquet, a folder saved
with ``datasets``' ``save_to_disk``, or a Hugging Face hub id (``owner/name``, read with
``datasets.load_dataset``). Every row is checked; a bad row raises ``ValueError`` naming the file
and line (or row), the field, the value and what was expected, e.g.
``train.jsonl:17: level 7 for 'verbosity' is out of range 0-4``. With ``on_error="skip"`` bad rows
are left out, each is logged and written with its reason to ``rejects_path``; no row is dropped
silently, and the counts read / kept / rejected are logged and returned by :func:`load_records`.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import logging
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moslim.data.schema import Example, PreferencePair, PromptRecord
from moslim.objectives import ObjectiveSet

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
ON_ERROR = ("raise", "skip")


class RowError(ValueError):
    """A bad row: ``where`` is ``file:line`` (or ``file:row N``); ``raw`` keeps the text of a row that did not
    parse, so the rejects file holds what was there."""

    def __init__(self, message: str, raw: str | None = None):
        super().__init__(message)
        self.raw = raw


@dataclass
class ReadResult:
    items: list[Any]
    read: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)

    @property
    def kept(self) -> int:
        return len(self.items)

    def summary(self, name: str) -> str:
        return f"{name}: read {self.read} rows, kept {self.kept}, rejected {len(self.rejected)}"


# -- raw rows -----------------------------------------------------------------------------------
def iter_rows(source: str | Path, split: str = "train", **load_options: Any) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, row)`` for each row; a row that is not even parseable comes as a RowError.

    ``load_options`` go to ``datasets.load_dataset`` for a hub id (e.g. ``data_dir="harmless-base"``).
    """
    path = Path(source)
    name = str(source)
    if path.is_dir():
        yield from _iter_dataset(_load_from_disk(path, split), name)
    elif path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"{name}: the file is empty")
    elif path.exists():
        suffixes = "".join(path.suffixes[-2:]).lower()
        if suffixes.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
            yield from _iter_jsonl(path, name)
        elif suffixes.endswith((".json", ".json.gz")):
            yield from _iter_json(path, name)
        elif suffixes.endswith((".csv", ".csv.gz")):
            yield from _iter_csv(path, name)
        elif suffixes.endswith(".parquet"):
            yield from _iter_parquet(path, name)
        else:
            raise ValueError(f"{name}: unknown file type; expected .jsonl, .json, .csv, .parquet "
                             "(optionally .gz for the text ones) or a datasets folder")
    elif _looks_like_hub_id(name):
        yield from _iter_dataset(_load_hub(name, split, load_options), f"{name}[{split}]")
    else:
        raise ValueError(f"{name}: no such file or folder (and not a hub id like 'owner/name')")


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


@contextlib.contextmanager
def _file_errors(name: str, position: Callable[[], str] = lambda: "") -> Iterator[None]:
    """A file that cannot be read to its end (truncated or corrupt gzip, not UTF-8) -> a ValueError naming it."""
    try:
        yield
    except EOFError:
        raise ValueError(f"{name}{position()}: the file ends early (a truncated .gz? download or build it "
                         f"again)") from None
    except gzip.BadGzipFile as err:
        raise ValueError(f"{name}: not a valid gzip file ({err})") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{name}{position()}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except (zlib.error, OSError) as err:
        raise ValueError(f"{name}{position()}: cannot be read ({err})") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` for each non-blank line; a line that is not JSON gives a RowError in its
    place (with the line's text in ``raw``); a file that cannot be read to its end, a ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file {path} does not exist")
    lineno = 0
    with _file_errors(str(path), lambda: f":{lineno + 1}"), _open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as err:
                yield lineno, RowError(f"{path}:{lineno}: not valid JSON ({err.msg} at character {err.pos}): "
                                       f"{line.strip()[:80]!r}", raw=line.rstrip("\n"))


def read_jsonl(path: str | Path) -> list[Any]:
    """Every value of a JSONL file (``.gz`` too); the first line that is not JSON is a ValueError naming it."""
    values = []
    for _, value in iter_jsonl(path):
        if isinstance(value, RowError):
            raise value
        values.append(value)
    return values


def _iter_jsonl(path: Path, name: str) -> Iterator[tuple[str, Any]]:
    for lineno, value in iter_jsonl(path):
        yield f"{name}:{lineno}", value


def _iter_json(path: Path, name: str) -> Iterator[tuple[str, Any]]:
    with _file_errors(name), _open_text(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{name}:{err.lineno}: not valid JSON ({err.msg})") from None
    if isinstance(data, Mapping) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise ValueError(f"{name}: expected a JSON list of objects (or {{'data': [...]}}), "
                         f"got {type(data).__name__}")
    for i, row in enumerate(data):
        yield f"{name}:row {i}", row


def _iter_csv(path: Path, name: str) -> Iterator[tuple[str, Any]]:
    start = 2
    with _file_errors(name, lambda: f":{start}"), _open_text(path) as f:
        reader = csv.DictReader(f)  # the header is line 1; records may span lines: report the line they start on
        for row in reader:
            yield f"{name}:{start}", {k: v for k, v in row.items() if k is not None}
            start = reader.line_num + 1


def _iter_parquet(path: Path, name: str) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    for i, row in enumerate(pq.read_table(path).to_pylist()):
        yield f"{name}:row {i}", row


def _load_from_disk(path: Path, split: str) -> Any:
    import datasets

    data = datasets.load_from_disk(str(path))
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise ValueError(f"{path}: no split {split!r}; splits: {', '.join(data)}")
        data = data[split]
    return data


def _load_hub(name: str, split: str, options: dict[str, Any]) -> Any:
    import datasets

    try:
        return datasets.load_dataset(name, split=split, **options)
    except OSError as err:  # ConnectionError and DatasetNotFoundError are OSErrors
        raise ValueError(f"{name}: could not load split {split!r} from the Hugging Face hub "
                         f"({type(err).__name__}: {err}); offline (HF_DATASETS_OFFLINE=1)? "
                         "Pass a local file or a save_to_disk folder instead") from None


def _iter_dataset(data: Any, name: str) -> Iterator[tuple[str, Any]]:
    for i, row in enumerate(data):
        yield f"{name}:row {i}", row


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/")) and "." not in parts[1][-8:]


# -- reading with validation ------------------------------------------------------------------
def load_records(source: str | Path, parse: Callable[[Mapping[str, Any], str], Any],
                 on_error: str = "raise", rejects_path: str | Path | None = None,
                 split: str = "train", **load_options: Any) -> ReadResult:
    """Read ``source`` row by row through ``parse(row, where)``; stop at or skip bad rows."""
    return parse_rows(iter_rows(source, split=split, **load_options), parse, str(source), on_error, rejects_path)


def parse_rows(rows: Iterable[tuple[str, Any]], parse: Callable[[Mapping[str, Any], str], Any], name: str,
               on_error: str = "raise", rejects_path: str | Path | None = None) -> ReadResult:
    """``load_records`` on rows already read (``iter_rows``' ``(where, row)``), e.g. to look at them first."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    result = ReadResult(items=[])
    rejects = []
    for where, row in rows:
        result.read += 1
        try:
            if isinstance(row, Exception):
                raise row
            if not isinstance(row, Mapping):
                raise RowError(f"{where}: expected an object with named fields, got {type(row).__name__}")
            item = parse(row, where)
            # A source row may hold several records (UltraFeedback: four completions per prompt).
            result.items.extend(item) if isinstance(item, list) else result.items.append(item)
        except ValueError as err:
            if on_error == "raise":
                raise
            logger.warning("skipped %s", err)
            result.rejected.append((where, str(err)))
            rejects.append({"where": where, "error": str(err),
                            "row": row if isinstance(row, Mapping) else getattr(row, "raw", None) or repr(row)})
    if rejects_path is not None and on_error == "skip":
        write_jsonl(rejects_path, rejects)
    logger.info(result.summary(name))
    return result


def read_examples(path: str | Path, objectives: ObjectiveSet | None,
                  column_map: Mapping[str, str] | None = None, on_error: str = "raise",
                  rejects_path: str | Path | None = None, split: str = "train") -> list[Example]:
    """Labelled examples: ``{"id", "prompt", "response", "labels": {objective: level}, "source"}``.

    ``column_map`` maps a field (or an objective name, for a flat label column) to the column that
    holds it, e.g. ``{"prompt": "question", "verbosity": "verbosity_score"}``. Columns named after
    an objective are read as its label too (handy for CSV); an empty cell is a missing label.
    ``objectives=None``: the (prompt, response) text only, labels not read (for a reader that scores
    the rows itself, as RiC does).
    """
    parse = example_parser(objectives, column_map)
    return load_records(path, parse, on_error, rejects_path, split).items


def read_pairs(path: str | Path, objectives: ObjectiveSet | None = None,
               column_map: Mapping[str, str] | None = None, on_error: str = "raise",
               rejects_path: str | Path | None = None, split: str = "train") -> list[PreferencePair]:
    """Preference pairs: ``{"id", "prompt", "chosen", "rejected", "objective", "source"}``."""
    return load_records(path, pair_parser(objectives, column_map), on_error, rejects_path, split).items


def read_prompts(path: str | Path, column_map: Mapping[str, str] | None = None, on_error: str = "raise",
                 rejects_path: str | Path | None = None, split: str = "train") -> list[PromptRecord]:
    """Prompts for RL or evaluation: ``{"id", "prompt", "source", "tags"}``."""
    return load_records(path, prompt_parser(column_map), on_error, rejects_path, split).items


# -- row parsers ------------------------------------------------------------------------------
def example_parser(objectives: ObjectiveSet | None, column_map: Mapping[str, str] | None = None):
    columns = dict(column_map or {})

    def parse(row: Mapping[str, Any], where: str) -> Example:
        get = _getter(row, columns)
        labels = _labels(row, columns, objectives, where) if objectives is not None else {}
        return Example(id=_id(get("id"), where), prompt=check_prompt(get("prompt"), where),
                       response=check_text(get("response"), "response", where, columns),
                       labels=labels, source=_optional_str(get("source"), "source", where))

    return parse


def pair_parser(objectives: ObjectiveSet | None = None, column_map: Mapping[str, str] | None = None):
    columns = dict(column_map or {})

    def parse(row: Mapping[str, Any], where: str) -> PreferencePair:
        get = _getter(row, columns)
        objective = check_text(get("objective"), "objective", where, columns)
        if objectives is not None and objective not in objectives:
            raise RowError(f"{where}: unknown objective {objective!r}; "
                           f"valid objectives: {', '.join(objectives.names)}")
        return PreferencePair(id=_id(get("id"), where), prompt=check_prompt(get("prompt"), where),
                              chosen=check_text(get("chosen"), "chosen", where, columns),
                              rejected=check_text(get("rejected"), "rejected", where, columns),
                              objective=objective, source=_optional_str(get("source"), "source", where))

    return parse


def prompt_parser(column_map: Mapping[str, str] | None = None):
    columns = dict(column_map or {})

    def parse(row: Mapping[str, Any], where: str) -> PromptRecord:
        get = _getter(row, columns)
        tags = _maybe_json(get("tags"), where, "tags") or {}
        if not isinstance(tags, Mapping):
            raise RowError(f"{where}: field 'tags' must be an object, got {tags!r}")
        return PromptRecord(id=_id(get("id"), where), prompt=check_prompt(get("prompt"), where),
                            source=_optional_str(get("source"), "source", where), tags=dict(tags))

    return parse


def _getter(row: Mapping[str, Any], columns: Mapping[str, str]) -> Callable[[str], Any]:
    return lambda name: row.get(columns.get(name, name))


def _id(value: Any, where: str) -> str:
    # A row without an id is named after where it came from, so it can still be traced.
    return where if value is None or value == "" else str(value)


def _optional_str(value: Any, name: str, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"{where}: field {name!r} must be a string, got {value!r}")
    return value


def check_text(value: Any, name: str, where: str, columns: Mapping[str, str] | None = None) -> str:
    column = (columns or {}).get(name, name)
    shown = repr(name) if column == name else f"{name!r} (column {column!r})"
    if value is None:
        raise RowError(f"{where}: missing field {shown}")
    if not isinstance(value, str):
        raise RowError(f"{where}: field {shown} must be a string, got {type(value).__name__} {value!r:.60}")
    if not value.strip():
        raise RowError(f"{where}: empty {name} (field {column!r} is blank)")
    return value


def check_prompt(value: Any, where: str) -> str | list[dict[str, str]]:
    """A prompt is non-empty text or a list of ``{"role", "content"}`` chat messages."""
    value = _maybe_json(value, where, "prompt") if isinstance(value, str) and value.startswith("[{") else value
    if isinstance(value, str) or value is None:
        return check_text(value, "prompt", where)
    if not isinstance(value, list) or not value:
        raise RowError(f"{where}: field 'prompt' must be text or a non-empty list of chat messages, "
                       f"got {value!r:.60}")
    for i, m in enumerate(value):
        if not isinstance(m, Mapping) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise RowError(f"{where}: prompt message {i} must be {{'role': one of {', '.join(ROLES)}, "
                           f"'content': text}}, got {m!r:.80}")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _maybe_json(value: Any, where: str, name: str) -> Any:
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise RowError(f"{where}: field {name!r} holds text that is not valid JSON: {value!r:.60}") from None


def _labels(row: Mapping[str, Any], columns: Mapping[str, str], objectives: ObjectiveSet,
            where: str) -> dict[str, int]:
    raw = _maybe_json(row.get(columns.get("labels", "labels")), where, "labels")
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise RowError(f"{where}: field 'labels' must be an object {{objective: level}}, got {raw!r:.60}")
    raw = dict(raw)
    for name in objectives.names:  # flat label columns (CSV, HelpSteer-like tables)
        column = columns.get(name, name)
        if column in row and column != "labels" and row[column] not in (None, ""):
            raw.setdefault(name, row[column])
    labels: dict[str, int] = {}
    for name, level in raw.items():
        if name not in objectives:
            raise RowError(f"{where}: unknown objective {name!r} in labels; "
                           f"valid objectives: {', '.join(objectives.names)}")
        if level is None:
            continue  # an explicit null is a missing label: that head is masked
        labels[name] = objectives[name].check_level(level, where)
    return {name: labels[name] for name in objectives.names if name in labels}


# -- writing ----------------------------------------------------------------------------------
def write_jsonl(path: str | Path, rows: list[Any]) -> Path:
    """Write records (dataclasses with ``to_json`` or dicts) as JSONL; ``.gz`` gets a byte-stable gzip."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r.to_json() if hasattr(r, "to_json") else r, ensure_ascii=False) + "\n"
                   for r in rows)
    data = text.encode("utf-8")
    if path.suffix == ".gz":
        buf = io.BytesIO()
        # mtime=0 and no file name in the header: a rebuild gives the same bytes.
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
            gz.write(data)
        data = buf.getvalue()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
