"""Paths: one resolver for the paths configs and commands take, and one atomic folder write.

 ``moslim:rel/path`` names a file shipped inside the
installed package (found with ``importlib.resources``); anything else is a local path, ``~`` expanded."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

PREFIX = "moslim:"


def resolve_path(path: str | Path) -> Path:
    """``"moslim:assets/demo/prompts_train.jsonl"`` -> that file in the installed package; else ``Path(path)``."""
    text = str(path)
    if text.startswith(PREFIX):
        return Path(str(resources.files("moslim").joinpath(text.removeprefix(PREFIX))))
    return Path(text).expanduser()


@contextlib.contextmanager
def atomic_folder(path: str | Path, tmp_prefix: str | None = None) -> Iterator[Path]:
    """Write a folder atomically: the block fills a temp folder next to ``path``, which replaces ``path`` only
    when the block ends without error; the previous ``path`` stays intact until then.

    A failed write (disk full, a serialiser's error) removes the temp folder and raises an OSError naming
    ``path``, so a crash never leaves a half-written folder that looks finished."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix or f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        tmp.chmod(0o755)
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise_save_error(path, err)


def raise_save_error(path: Path, err: BaseException) -> None:
    """Re-raise a failed write of ``path``: a file-system or serialiser error becomes an OSError naming it."""
    if isinstance(err, OSError | RuntimeError) or type(err).__name__ == "SafetensorError":
        raise OSError(f"could not save {path} ({type(err).__name__}: {err}); what was there before is "
                      f"unchanged. Is the disk full?") from err
    raise err


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` of a transformers Trainer whose trainer_state.json exists: Trainer writes it
    last, so a folder left by a save that was killed half-way is never resumed from."""
    if not output_dir.is_dir():
        return None
    done = [p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
            and (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)
