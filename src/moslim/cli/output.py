"""The console the commands print their tables to."""

from __future__ import annotations

import sys

from rich.console import Console

PIPE_WIDTH = 200  # columns when stdout is a file or a pipe: rich would assume 80 and cut cells ("helpful…")


def make_console() -> Console:
    """A rich Console: the terminal's width on a terminal, PIPE_WIDTH columns otherwise (logs, CI, `| less`)."""
    return Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)
