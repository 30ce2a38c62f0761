"""`moslim generate` (not yet available: built by a later issue)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("generate", help="generate (not yet available)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("moslim generate: not yet available")
    return 0
