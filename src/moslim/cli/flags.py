"""Command-line flags shared by the command groups."""

from __future__ import annotations

import argparse


def renamed_flag(parser: argparse.ArgumentParser, old: str, new: str, when: str) -> None:
    """Refuse ``old`` with its new name (hidden from ``--help``), as configs refuse a renamed key."""

    class Renamed(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            parser.error(f"{old} was renamed to {new} ({when}, one name for it in every command); use {new}")

    parser.add_argument(old, action=Renamed, nargs="?", help=argparse.SUPPRESS)
