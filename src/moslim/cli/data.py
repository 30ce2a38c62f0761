"""`moslim data`: validate files, show their level balance, build the demo dataset, export RL prompts."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from moslim.cli import data_export
from moslim.cli.output import make_console

DEMO_OBJECTIVES = Path(__file__).resolve().parent.parent / "assets" / "demo" / "objectives.yaml"
KINDS = ("auto", "examples", "pairs", "prompts")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="validate data files, show level balance, build the demo dataset",
                            description="Labelled examples, preference pairs and prompt sets.")
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: parser.print_help() or 0)

    validate = commands.add_parser("validate", help="check every row of a file; report bad rows with file:line",
                                   description="Read PATH (JSONL, JSON, CSV, Parquet, a datasets folder or a "
                                   "hub id) and check every row against the objective set.")
    _common(validate)
    validate.add_argument("--skip-bad", action="store_true",
                          help="keep going past bad rows (default: stop at the first one)")
    validate.add_argument("--rejects", type=Path, help="with --skip-bad: write bad rows and reasons here (JSONL)")
    validate.set_defaults(func=run_validate)

    stats = commands.add_parser("stats", help="rows per objective and level, label coverage, histogram PNG")
    _common(stats)
    stats.add_argument("--png", type=Path, help="histogram file (default: runs/data_stats/<name>.png)")
    stats.set_defaults(func=run_stats)

    build = commands.add_parser("build-demo", help="rebuild the shipped demo dataset from the public data folder")
    build.add_argument("--source", type=Path, required=True, help="the public data folder (../shared/data)")
    build.add_argument("--out", type=Path, help="output folder (default: the package's assets/demo)")
    build.set_defaults(func=run_build_demo)

    data_export.register(commands)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="file, datasets folder, or hub id (owner/name)")
    parser.add_argument("--objectives", type=Path, default=DEMO_OBJECTIVES,
                        help="objective set YAML (default: the demo's)")
    parser.add_argument("--kind", choices=KINDS, default="auto",
                        help="what the rows are (auto: pairs if a row has 'chosen', examples if 'response')")
    parser.add_argument("--split", default="train", help="split for a datasets folder or hub id")
    parser.add_argument("--column", action="append", default=[], metavar="FIELD=COLUMN",
                        help="read FIELD (or an objective's label) from COLUMN; repeatable")


def _column_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        field, sep, column = item.partition("=")
        if not sep or not field or not column:
            raise ValueError(f"--column {item!r} should look like FIELD=COLUMN, e.g. prompt=question")
        out[field.strip()] = column.strip()
    return out


# Field names that hold an answer under another name than 'response'.
RESPONSE_LIKE = frozenset({"answer", "completion", "output", "reply", "assistant", "generation"})


def _detect_kind(rows: list, columns: dict[str, str], objectives) -> tuple[str, str]:
    """(kind, why) from every row, not the first: pairs if any row has 'chosen'; examples if any row has
    'response' or an objective's label; else prompts. Rows that do not fit the kind are then rejected."""
    keys: set[str] = set()
    for _, row in rows:
        if isinstance(row, dict):
            keys.update(row)
    chosen, response = columns.get("chosen", "chosen"), columns.get("response", "response")
    if chosen in keys:
        return "pairs", f"a row has {chosen!r}"
    labels = sorted(keys & {columns.get(name, name) for name in objectives.names})
    if response in keys or labels:
        return "examples", f"a row has {response!r}" if response in keys else f"rows carry labels {labels}"
    lookalike = sorted(keys & RESPONSE_LIKE)
    if lookalike:  # an examples file under another name would pass as prompts, and fail only in `rm train`
        raise ValueError(f"no row has {response!r}, {chosen!r} or a label, but rows have {lookalike[0]!r}: if it "
                         f"holds the answers, map it (--column response={lookalike[0]}); for a prompts file, "
                         "pass --kind prompts")
    return "prompts", f"no row has {chosen!r}, {response!r} or an objective's label"


def _read(args: argparse.Namespace, on_error: str = "raise", rejects: Path | None = None):
    from moslim.data.readers import example_parser, iter_rows, pair_parser, parse_rows, prompt_parser
    from moslim.objectives import ObjectiveSet

    objectives = ObjectiveSet.from_yaml(args.objectives, with_factors=True)  # factor labels are labels too
    columns = _column_map(args.column)
    rows = list(iter_rows(args.path, split=args.split))  # one read: the kind is detected from the same rows
    try:
        kind, why = (args.kind, "--kind") if args.kind != "auto" else _detect_kind(rows, columns, objectives)
    except ValueError as err:
        raise ValueError(f"{args.path}: {err}") from None
    parse = {"examples": lambda: example_parser(objectives, columns),
             "pairs": lambda: pair_parser(objectives, columns), "prompts": lambda: prompt_parser(columns)}[kind]()
    result = parse_rows(rows, parse, args.path, on_error, rejects)
    if result.read == 0:
        raise ValueError(f"{args.path}: no rows")
    return kind, why, objectives, result


def run_validate(args: argparse.Namespace) -> int:
    if args.rejects and not args.skip_bad:
        raise ValueError("--rejects needs --skip-bad (without it the first bad row stops the run)")
    kind, why, _, result = _read(args, "skip" if args.skip_bad else "raise", args.rejects)
    print(f"{args.path}: {kind} ({why}): read {result.read} rows, kept {result.kept}, rejected {len(result.rejected)}")
    for _, reason in result.rejected[:20]:
        print(f"  rejected {reason}")
    if len(result.rejected) > 20:
        print(f"  ... and {len(result.rejected) - 20} more" + (f" (all in {args.rejects})" if args.rejects else ""))
    return 1 if result.rejected else 0


def run_stats(args: argparse.Namespace) -> int:
    from rich.table import Table

    from moslim.data.stats import coverage, level_counts, plot_level_histograms

    kind, _, objectives, result = _read(args)
    console = make_console()
    if kind != "examples":
        return _print_tally(console, args.path, kind, result.items)
    counts, cover = level_counts(result.items, objectives), coverage(result.items, objectives)
    table = Table(title=f"{args.path}: {result.kept} examples")
    table.add_column("objective")
    for level in range(objectives.max_classes):
        table.add_column(f"level {level}", justify="right")
    table.add_column("coverage", justify="right")
    for obj in objectives:
        cells = [str(c) for c in counts[obj.name]] + ["-"] * (objectives.max_classes - obj.num_levels)
        table.add_row(obj.name, *cells, f"{cover[obj.name]:.0%}")
    console.print(table)
    name = Path(args.path).name.split(".")[0] or "data"
    png = plot_level_histograms(counts, args.png or Path("runs/data_stats") / f"{name}.png", title=name)
    console.print(f"histograms: {png}")
    return 0


def run_build_demo(args: argparse.Namespace) -> int:

    from moslim.data.demo import DEMO_DIR, FILES, build_demo

    console = make_console()
    start = time.perf_counter()
    with console.status("building the demo dataset") as status:
        paths = build_demo(args.source, args.out or DEMO_DIR, progress=lambda step: status.update(step))
    for name in FILES:
        console.print(f"  {paths[name]}  {paths[name].stat().st_size / 1024:,.0f} KiB")
    console.print(f"built in {time.perf_counter() - start:.1f} s; balance report: {paths['balance.md']}")
    return 0


def _print_tally(console, path: str, kind: str, items: list) -> int:
    """Pairs per (source, objective), or prompts per (origin, safety) tag."""
    from collections import Counter

    from rich.table import Table

    if kind == "pairs":
        tally, columns = Counter((p.source, p.objective) for p in items), ("source", "objective")
    else:
        tally = Counter((str(p.tags.get("origin", p.source)), str(p.tags.get("safety", "-"))) for p in items)
        columns = ("origin", "safety")
    table = Table(title=f"{path}: {len(items)} {kind}")
    for column in columns:
        table.add_column(column)
    table.add_column(kind, justify="right")
    for (a, b), n in sorted(tally.items()):
        table.add_row(a, b, str(n))
    console.print(table)
    return 0
