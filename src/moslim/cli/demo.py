"""`moslim demo [--quick]`: the whole pipeline end to end, reusing finished stages."""

from __future__ import annotations

import argparse
from pathlib import Path

from moslim.cli.output import make_console


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo", help="prepare models, train the reward model (and a judge model), RL, evaluate, report",
        description="Run the demo end to end on the shipped demo data: prepare the built-in models, train the "
        "reward model (and an independent judge model, when the config's judge stage is on; configs/demo/demo.yaml "
        "judges by exact and refusal rules instead), RL the SmolLM2 policy, evaluate it and its base, write "
        "<out>/report.md and report.html, and print a summary. Finished stages are reused on a second run.")
    parser.add_argument("--quick", action="store_true",
                        help="the same stages, tiny (configs/demo/quick.yaml, into runs/demo-quick): a smoke check")
    parser.add_argument("--config", help="demo YAML (default configs/demo/demo.yaml, or quick.yaml with --quick)")
    parser.add_argument("--out", help="output folder (default runs/demo, runs/demo-quick with --quick)")
    parser.add_argument("--force", metavar="STAGE",
                        help="redo STAGE and every stage after it: models, rm, judge, rl, eval, report")
    parser.add_argument("overrides", nargs="*", help="demo config overrides, e.g. 'rl.overrides=[trl.max_steps=5]'")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from moslim.config import load_config
    from moslim.demo import STAGES, StageError, find_config, read_stages, run_demo
    from moslim.demo.config import DemoConfig

    console = make_console()
    config = args.config or ("configs/demo/quick.yaml" if args.quick else "configs/demo/demo.yaml")
    overrides = list(args.overrides) + ([f"out={args.out}"] if args.out else [])
    cfg = load_config(DemoConfig, find_config(config), overrides)

    def announce(index: int, stage: str, description: str, status: str) -> None:
        note = {"reused": " [green](reused)[/green]", "off": " [dim](off in this config)[/dim]"}.get(status, "")
        console.rule(f"[bold]stage {index}/6: {stage}[/bold] — {description}{note}")

    if args.force is not None and args.force not in STAGES:  # a usage error (exit 2), before any stage runs
        raise ValueError(f"--force {args.force!r}: unknown stage; stages: {', '.join(STAGES)}")
    try:
        record = run_demo(cfg, force=args.force, announce=announce, finished=print_stage)
    except (StageError, ValueError, OSError) as err:
        print_summary(console, Path(cfg.out))
        failed = [name for name, info in read_stages(Path(cfg.out)).get("stages", {}).items()
                  if info.get("status") == "failed"]
        console.print(f"[red]moslim demo stopped{' at stage ' + failed[0] if failed else ''}:[/red] {err}")
        return 1
    print_summary(console, Path(cfg.out))
    console.print(f"total {record['total_seconds']:.0f} s; report: [bold]{Path(cfg.out) / 'report.md'}[/bold] "
                  f"(and report.html)")
    return 0


def print_stage(stage: str, out: Path) -> None:
    """What the stage's own command prints when it finishes."""
    import json

    if stage in ("rm", "judge"):
        from moslim.cli.rm import print_metrics

        print_metrics(json.loads((out / stage / "moslim_run.json").read_text(encoding="utf-8"))["metrics"])
    elif stage == "rl":
        from moslim.cli.rl import print_summary as print_rl

        print_rl(json.loads((out / "rl" / "moslim_run.json").read_text(encoding="utf-8")))
    elif stage == "eval":
        from moslim.cli.evaluate import print_summary as print_eval

        print_eval(json.loads((out / "eval" / "metrics.json").read_text(encoding="utf-8")))


def print_summary(console, out: Path) -> None:
    """Stage wall times, then controllability before / after RL as judged by the independent judges."""
    import json

    from rich.table import Table

    from moslim.demo import read_stages

    stages = Table(title=f"demo stages ({out})")
    for column in ("stage", "status", "wall time (s)", "CPU time (s)", "peak RSS (GiB)"):
        stages.add_column(column)
    for name, info in read_stages(out).get("stages", {}).items():
        times = [f"{info[key]:.0f}" if info.get(key) is not None else "-" for key in ("seconds", "cpu_seconds")]
        rss = f"{info['peak_rss_mib'] / 1024:.1f}" if info.get("peak_rss_mib") else "-"
        stages.add_row(name, info.get("status", ""), *times, rss)
    console.print(stages)
    metrics_path = out / "eval" / "metrics.json"
    if not metrics_path.exists():
        return
    from moslim.cli.evaluate import controllability_table

    console.print(controllability_table(json.loads(metrics_path.read_text(encoding="utf-8"))))
