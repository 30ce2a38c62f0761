"""`moslim data export --format verl|openrlhf --config RL.yaml --out FILE`: the RL prompts for other engines."""

from __future__ import annotations

import argparse
from pathlib import Path

from moslim.cli.output import make_console


def register(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export", help="write the RL prompts (preference in the system message) for verl or OpenRLHF",
        description="Build the prompt dataset `moslim rl train --config RL.yaml` would train on (same data "
        "section, same seed) and write it as verl Parquet (preference in extra_info) or OpenRLHF JSONL "
        "(preference in the label). Recipes: docs/scaling.md.")
    export.add_argument("--format", required=True, choices=["verl", "openrlhf"], dest="fmt",
                        help="verl: Parquet (.parquet); openrlhf: JSONL (.jsonl)")
    export.add_argument("--config", required=True, help="RL config whose data section to export, e.g. configs/rl.yaml")
    export.add_argument("--out", type=Path, required=True, help="output file (.parquet for verl, .jsonl for openrlhf)")
    export.add_argument("--data-source", default="moslim", help="verl's data_source column (default: moslim)")
    export.add_argument("--split", default="train", help="verl's extra_info.split (default: train)")
    export.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.preferences_per_prompt=4")
    export.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from moslim.config import load_config
    from moslim.policy.config import RLConfig
    from moslim.policy.export import check_output, dataset_from_config, export_dataset

    check_output(args.fmt, args.out)  # before any work
    config = load_config(RLConfig, args.config, list(args.overrides))
    config.check()
    dataset = dataset_from_config(config)
    path = export_dataset(dataset, args.fmt, args.out, data_source=args.data_source, split=args.split)
    console = make_console()
    console.print(f"{len(dataset)} rows ({args.fmt}) written to [bold]{path}[/bold]")
    return 0
