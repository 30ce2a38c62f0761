"""`moslim baseline METHOD --config FILE [overrides]` and `moslim compare RUN... [--out DIR]`."""

from __future__ import annotations

import argparse

from moslim.cli.output import make_console

METHODS = ("morlhf", "soups", "ric", "moslim", "prompt-only")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "baseline", help="train and evaluate a baseline (MORLHF, Rewarded Soups, RiC) on the preference grid",
        description="Run one method's stages (training, then generation and judging at every grid point) into "
        "OUT, reusing finished stages; writes OUT/baseline_run.json last. 'moslim' and 'prompt-only' only "
        "evaluate a given policy. See docs/baselines.md.")
    methods = parser.add_subparsers(dest="method", metavar="METHOD", required=True)
    for method in METHODS:  # one subcommand each, so the overrides may follow --config (as `moslim rl train`)
        one = methods.add_parser(method, help=f"run {method} (see docs/baselines.md)")
        one.add_argument("--config", required=True, help=f"YAML config, e.g. configs/baselines/"
                         f"{method.replace('-', '_')}.yaml")
        one.add_argument("overrides", nargs="*", help="dotted overrides, e.g. rl.policies=5 eval.num_prompts=8")
        one.set_defaults(func=run_baseline)

    compare = sub.add_parser(
        "compare", help="compare methods' runs: fronts, hypervolume, request-following, compute",
        description="Read each RUN's baseline_run.json and write compare.md, compare.html, compare.json and "
        "compare-fronts.png into --out.")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="folders written by `moslim baseline`")
    compare.add_argument("--out", default="runs/compare", help="output folder (default runs/compare)")
    compare.set_defaults(func=run_compare)


def run_baseline(args: argparse.Namespace) -> int:
    from moslim.baselines.config import BaselineConfig
    from moslim.baselines.recipes import run_baseline as run
    from moslim.config import load_config

    console = make_console()
    cfg = load_config(BaselineConfig, args.config, list(args.overrides))
    cfg.check(args.method)

    def announce(index: int, total: int, stage: str, reused: bool) -> None:
        note = " [green](reused)[/green]" if reused else ""
        console.rule(f"[bold]{args.method}: stage {index}/{total}: {stage}[/bold]{note}")

    summary = run(args.method, cfg, announce=announce)
    c = summary["compute"]
    console.print(f"{args.method}: hypervolume {summary['hypervolume']:.3f} "
                  f"(reference {tuple(summary['reference_point'])}); {c.get('training_runs')} training run(s), "
                  f"{c.get('rl_steps') or 0} RL + {c.get('sft_steps') or 0} SFT steps, {c.get('cpu_seconds')} CPU s; "
                  f"wrote [bold]{cfg.out}/baseline_run.json[/bold]")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from moslim.baselines.compare import compare_runs

    console = make_console()
    result = compare_runs(args.runs, args.out)
    for label, m in result["methods"].items():
        console.print(f"{label:>24}: hypervolume {m['hypervolume']:.3f}")
    console.print(f"wrote [bold]{args.out}/compare.md[/bold] (and compare.html, compare.json, compare-fronts.png)")
    return 0
