"""One resolver for the paths configs and commands take: ``moslim:rel/path`` names a file shipped inside the
installed package (found with ``importlib.resources``); anything else is a local path, ``~`` expanded."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PREFIX = "moslim:"


def resolve_path(path: str | Path) -> Path:
    """``"moslim:assets/demo/prompts_train.jsonl"`` -> that file in the installed package; else ``Path(path)``."""
    text = str(path)
    if text.startswith(PREFIX):
        return Path(str(resources.files("moslim").joinpath(text.removeprefix(PREFIX))))
    return Path(text).expanduser()
