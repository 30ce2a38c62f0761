"""The ``moslim`` command line: one module per command group, each with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import logging
import os
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
        return leave_process_group(int(args.func(args) or 0))
    except ValueError as err:  # bad input: a clear message, no traceback
        print(f"moslim: error: {err}", file=sys.stderr)
        return leave_process_group(2)
    except OSError as err:  # the machine: a full disk, a missing permission; the message names the path
        print(f"moslim: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("moslim: interrupted", file=sys.stderr)
        return 130


def leave_process_group(code: int) -> int:
    """``code``, or under ``torchrun`` / ``accelerate launch`` (a process group is up): wait for every rank (when this
    one succeeded), tear the group down, and exit with ``code`` at once.

    Left to interpreter exit, gloo's threads were seen to abort a rank after all its work was saved ("terminate
    called without an active exception", exit -6), and the launcher then reports the whole run as failed. Exiting
    without the distributed runtime's C++ destructors is the remedy the DDP test worker has used since 2026-11-30;
    the output files are closed by then and stdout, stderr and logging are flushed first.
    """
    if "torch.distributed" not in sys.modules:  # torch never set up a group: nothing to leave
        return code
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return code
    if code == 0:
        dist.barrier()
    dist.destroy_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
