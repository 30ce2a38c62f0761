"""Typed configs: dataclasses filled from YAML plus dotted command-line overrides.

``load_config(TrainConfig, "configs/rm.yaml", ["train.learning_rate=1e-4"])`` reads the YAML, applies the
overrides, and builds the dataclass tree. Unknown keys are rejected with a "did you mean"; a field
typed ``dict[str, Any]`` is a pass-through section (e.g. TRL's own options, which TRL validates). A class
may name old keys (``RENAMED``: {old: (new, why)}) and values that are gone (``RETIRED``: {field: {value: why}}),
so that they get a message of their own instead of "unknown key" / "is not one of".

Numbers are range-checked as they are read, before anything loads: every int / float field must be >= 0
unless its field says otherwise with :func:`bounded` (``max_steps: int | None = bounded(None, low=1)``).
An error names where the value came from: ``configs/rm.yaml:train:max_steps`` or, for a value given on the
command line, ``override 'train.max_steps=-5'``.
"""

from __future__ import annotations

import contextvars
import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class YamlLoader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-5`` as a float, as YAML 1.2 does (PyYAML's 1.1 rules want ``1.0e-5`` and would
    hand a pass-through section such as ``trl:`` the string "1e-5")."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+"
               r"(?:[eE][-+]?[0-9]+)?|\.(?:inf|Inf|INF))$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))
RANGE = "moslim_range"  # dataclass field metadata key: (low, high, low_inclusive)
# (YAML file, {dotted key: override item}) of the load in progress: error messages name the value's origin.
_ORIGINS: contextvars.ContextVar[tuple[str, dict[str, str]]] = contextvars.ContextVar("_ORIGINS", default=("", {}))


def bounded(default: Any = dataclasses.MISSING, *, low: float | None = 0, high: float | None = None,
            low_inclusive: bool = True, **kwargs: Any) -> Any:
    """A dataclass field whose numbers must lie in [low, high] (``low_inclusive=False``: above ``low``).

    Unbounded fields get the default range: >= 0. ``low=None`` allows any number (e.g. a signed offset)."""
    return dataclasses.field(default=default, metadata={RANGE: (low, high, low_inclusive)}, **kwargs)


@dataclasses.dataclass
class LoraSection:
    """LoRA adapters (peft), the same section for the reward model (``model.lora``) and the policy
    (``policy.lora``). Not faster on CPU (measured); it saves memory on a GPU."""

    enabled: bool = False
    r: int = bounded(16, low=1)  # adapter rank
    alpha: int = bounded(32, low=1)  # scaling numerator (alpha / r)
    dropout: float = bounded(0.05, high=1)
    target_modules: str | list[str] = "all-linear"  # peft's names; "all-linear" adapts every linear layer
    # What a saved model holds: the adapters merged into the weights, or the adapter alone (policy only:
    # a reward model is always saved merged).
    save: typing.Literal["merged", "adapter"] = "merged"


def _place(where: str) -> str:
    """``where`` (``source:section:field``) as the user wrote it: the YAML place, or the override that set it."""
    source, overrides = _ORIGINS.get()
    dotted = where[len(source) + 1:].replace(":", ".") if source and where.startswith(source + ":") else \
        where.replace(":", ".")
    dotted = dotted.split("[")[0]
    for key, item in overrides.items():
        if dotted == key or dotted.startswith(key + "."):
            return f"override {item!r}"
    return where


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=YamlLoader) or {}
        except FileNotFoundError:
            raise ValueError(f"config file {path} does not exist") from None
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the top level must be a mapping of sections")
    origins: dict[str, str] = {}
    for item in overrides or []:
        apply_override(data, item)
        origins[item.partition("=")[0].strip()] = item
    token = _ORIGINS.set((source, origins))
    try:
        return from_dict(cls, data, source)
    finally:
        _ORIGINS.reset(token)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to the nested dict ``data``."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {item!r} should look like 'section.field=value'")
    try:
        value = yaml.load(raw, Loader=YamlLoader) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ValueError(f"override {item!r}: the value is not valid YAML ({err.__class__.__name__}: "
                         f"{str(err).splitlines()[0]})") from None
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {item!r}: {part!r} is not a section")
    node[parts[-1]] = value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    if not isinstance(data, dict):
        raise ValueError(f"{_place(where)}: expected a mapping for {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    renamed = getattr(cls, "RENAMED", {})  # {old key: (new key, why)}
    for key in (k for k in unknown if k in renamed):
        new, why = renamed[key]
        raise ValueError(f"{_place(f'{where}:{key}' if where else key)}: {key!r} was renamed to {new!r} "
                         f"({why}); write {new}: instead")
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(fields), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(fields)}"
        place = _place(f"{where}:{key}" if where else key)
        raise ValueError(f"{place}: unknown key {key!r} in {cls.__name__}{hint}")
    retired = getattr(cls, "RETIRED", {})  # {field: {value: why it is gone and what to use instead}}
    kwargs = {}
    for name, value in data.items():
        at = f"{where}:{name}" if where else name
        if isinstance(value, str) and value in retired.get(name, {}):
            raise ValueError(f"{_place(at)}: {value!r} is not available: {retired[name][value]}")
        kwargs[name] = _check_range(fields[name], _convert(hints[name], value, at), at)
    try:
        obj = cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"{_place(where)}: {err}") from None
    return obj


def _check_range(spec: dataclasses.Field, value: Any, where: str) -> Any:
    """``value`` when its numbers lie in the field's range (see :func:`bounded`; default >= 0), else ValueError."""
    low, high, low_inclusive = spec.metadata.get(RANGE, (0, None, True))
    numbers = value if isinstance(value, list | tuple) else [value]
    for number in numbers:
        if isinstance(number, bool) or not isinstance(number, int | float):
            continue
        if math.isnan(number):
            raise ValueError(f"{_place(where)}: expected a number, got nan")
        too_low = low is not None and (number < low or (number == low and not low_inclusive))
        if too_low or (high is not None and number > high):
            expected = " and ".join(part for part in (
                (f">= {low}" if low_inclusive else f"> {low}") if low is not None else "",
                f"<= {high}" if high is not None else "") if part)
            raise ValueError(f"{_place(where)}: {number!r} is out of range; expected a number {expected}")
    return value


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, where)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0] if len(errors) == 1 else f"{_place(where)}: {value!r} matches none of {tp}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value if value is not None else {}, where)
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{_place(where)}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{_place(where)}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{_place(where)}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{_place(where)}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{_place(where)}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{_place(where)}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError(f"{_place(where)}: expected a string, got {value!r}")
        return str(value)
    return value


def to_dict(obj: Any) -> dict[str, Any]:
    """A config dataclass as plain data (for saving next to a run's outputs)."""
    return dataclasses.asdict(obj)


def save_config(obj: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False), encoding="utf-8")
