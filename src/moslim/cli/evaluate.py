"""`moslim eval`: does the policy follow the requested levels, before and after RL?"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval", help="evaluate a policy (and its base) on a preference grid; write metrics.json and a report",
        description="Generate on held-out prompts for each preference of a grid (each objective alone at each "
        "level, pairs of objectives on a grid of levels), judge every completion with the reward model and "
        "independent judges, and write generations-*.jsonl, metrics.json, report.md and report.html.")
    parser.add_argument("--config", help="eval YAML (e.g. configs/demo/eval.yaml); flags below override it")
    parser.add_argument("--policy", help="the RL policy folder")
    parser.add_argument("--reward-model", help="the reward model folder")
    parser.add_argument("--prompts", help="held-out prompts JSONL")
    parser.add_argument("--judge", help="independent judge model folder (helpfulness, harmlessness)")
    parser.add_argument("--base-policy", help="the prompt-only control (default smollm2-135m-instruct)")
    parser.add_argument("--no-base", action="store_true", help="skip the base policy")
    parser.add_argument("--objectives", help="objectives YAML with the labelling spec (exact judges)")
    parser.add_argument("--num-prompts", type=int, help="how many held-out prompts")
    parser.add_argument("--samples", type=int, help="completions per prompt and preference")
    parser.add_argument("--out", help="output folder (default runs/eval)")
    parser.add_argument("--no-report", action="store_true", help="write metrics.json only")
    parser.add_argument("overrides", nargs="*", help="config overrides such as generation.max_new_tokens=96")
    parser.set_defaults(func=run)


FLAGS = {"policy": "policy", "reward_model": "reward_model", "prompts": "prompts", "judge": "judge",
         "base_policy": "base_policy", "objectives": "objectives", "num_prompts": "num_prompts",
         "samples": "generation.samples", "out": "out"}


def run(args: argparse.Namespace) -> int:
    from moslim.config import load_config
    from moslim.evaluation.report import write_report
    from moslim.evaluation.runner import EvalConfig, run_evaluation

    overrides = list(args.overrides)
    overrides += [f"{key}={getattr(args, flag)}" for flag, key in FLAGS.items() if getattr(args, flag) is not None]
    if args.no_base:
        overrides.append("base_policy=null")
    cfg = load_config(EvalConfig, args.config, overrides)
    metrics = run_evaluation(cfg)
    print_summary(metrics)
    print(f"metrics: {Path(cfg.out) / 'metrics.json'}")
    if not args.no_report:
        print(f"report:  {write_report(cfg.out)}")
    return 0


def print_summary(metrics: dict) -> None:
    """A rich table: per objective, hit rate and Spearman before / after RL (independent judges first)."""
    from rich.console import Console
    from rich.table import Table

    from moslim.evaluation.report import fmt, judge_label

    policies = metrics["policies"]
    labels = [label for label in ("base", "policy") if label in policies]
    table = Table(title="controllability (value [95% CI])")
    for column in ("objective", "judged by", "metric", *("before RL" if lb == "base" else "after RL" for lb in labels)):
        table.add_column(column)
    for source in ("judge", "reward_model"):
        names = sorted({n for lb in labels for n in policies[lb]["controllability"].get(source, {})})
        for name in names:
            results = [policies[lb]["controllability"].get(source, {}).get(name) for lb in labels]
            judge = judge_label(metrics.get("judges", {}), next(r["judge"] for r in results if r))
            for metric in ("hit_rate", "spearman"):
                table.add_row(name, judge, metric, *(fmt(r[metric]["value"], r[metric]["ci"]) if r else "-"
                                                     for r in results))
    Console().print(table)
