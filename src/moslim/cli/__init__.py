"""The ``moslim`` command line: one module per command group, each with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import logging
import sys

from moslim.threads import configure_openmp

# Before torch loads: idle OpenMP threads spin briefly, then sleep (see moslim.threads).
configure_openmp()

from moslim import __version__  # noqa: E402
from moslim.cli import baseline, data, demo, evaluate, generate, models, rl, rm, serve  # noqa: E402

# Order is the order `moslim --help` lists them in.
GROUPS = [models, data, rm, rl, generate, evaluate, demo, serve, baseline]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moslim",
        description="Multi-objective alignment of LLMs through multi-head reward classification (MOSLIM). "
        "One reward model with a head per objective, one policy that reads target levels from its prompt.",
        epilog="Start with `moslim demo --quick`, or `moslim COMMAND --help` for one command.",
    )
    parser.add_argument("--version", action="version", version=f"moslim {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except ValueError as err:  # bad input: a clear message, no traceback
        print(f"moslim: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the machine: a full disk, a missing permission; the message names the path
        print(f"moslim: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("moslim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
