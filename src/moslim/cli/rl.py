"""`moslim rl train --config FILE [section.key=value ...]`: RL of a policy against the MOSLIM reward."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from moslim.cli.output import make_console


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("rl", help="train a policy with RL against the MOSLIM reward (GRPO, RLOO, PPO)")
    rl_sub = parser.add_subparsers(dest="rl_command", metavar="SUBCOMMAND", required=True)
    train = rl_sub.add_parser("train", help="run RL training from a YAML config",
                              description="Train a policy: prompts with sampled preferences, the MOSLIM "
                              "reward: GRPO or RLOO (TRL), or PPO (a critic on TRL's GRPO machinery). Writes "
                              "OUTPUT_DIR/final/ and OUTPUT_DIR/moslim_run.json.")
    train.add_argument("--config", required=True, help="YAML config, e.g. configs/rl.yaml")
    train.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trl.max_steps=10 train.algorithm=rloo")
    group = train.add_mutually_exclusive_group()
    group.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                       help="resume from CHECKPOINT, or the last complete one in the output folder (default: auto)")
    group.add_argument("--no-resume", action="store_true", help="start from scratch even if checkpoints exist")
    train.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from moslim.config import load_config
    from moslim.policy.train import RUN_FILE, RLConfig, train_policy

    overrides = list(args.overrides)
    if args.resume:
        overrides.append(f"train.resume={args.resume}")
    if args.no_resume:
        overrides.append("train.resume=never")
    config = load_config(RLConfig, args.config, overrides)
    config.check()
    config.check_inputs()
    train_policy(config)
    summary = json.loads((Path(config.train.output_dir) / RUN_FILE).read_text(encoding="utf-8"))
    print_summary(summary)
    return 0


def print_summary(summary: dict) -> None:
    console = make_console()
    steps = summary["steps"]
    table = Table(title=f"{summary['algorithm'].upper()}: {summary['global_step']} steps, {summary['wall_s']} s")
    keys = ["step", "reward", "completions/mean_length", "kl", "time/step"]
    keys += sorted({k for s in steps for k in s if k.endswith("/hit_rate")})
    for key in keys:
        table.add_column(key.replace("moslim/", "").replace("completions/", ""), justify="right")
    shown = steps if len(steps) <= 12 else steps[:6] + steps[-6:]
    for s in shown:
        table.add_row(*(f"{s[k]:.3g}" if isinstance(s.get(k), float) else str(s.get(k, "")) for k in keys))
    console.print(table)
    split = summary["mean_time_s"]
    if split.get("step"):
        console.print("mean step time: " + ", ".join(f"{k} {v:.2f} s" for k, v in split.items() if v is not None))
    if summary.get("peak_rss_mib"):
        console.print(f"peak resident memory: {summary['peak_rss_mib'] / 1024:.1f} GiB")
    console.print(f"policy saved to [bold]{summary['final']}[/bold]")
