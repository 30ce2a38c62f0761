"""`moslim eval`: does the policy follow the requested levels, before and after RL?"""

from __future__ import annotations

import argparse
from pathlib import Path

from moslim.cli.flags import renamed_flag
from moslim.cli.output import make_console


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
    parser.add_argument("--num-samples", type=int, help="completions per prompt and preference")
    parser.add_argument("--out", help="output folder (default runs/eval)")
    parser.add_argument("--no-report", action="store_true", help="write metrics.json only")
    parser.add_argument("overrides", nargs="*", help="config overrides such as generation.max_new_tokens=96")
    renamed_flag(parser, "--samples", "--num-samples", "2026-12-04")
    parser.set_defaults(func=run)


FLAGS = {"policy": "policy", "reward_model": "reward_model", "prompts": "prompts", "judge": "judge",
         "base_policy": "base_policy", "objectives": "objectives", "num_prompts": "num_prompts",
         "num_samples": "generation.num_samples", "out": "out"}


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

    make_console().print(controllability_table(metrics, ("judge", "reward_model"), ("hit_rate", "spearman")))


def controllability_table(metrics: dict, sources=("judge",),
                          names=("hit_rate", "mean_abs_error", "spearman", "slope")):
    """A rich table: per objective and metric, the value before and after RL and the paired change."""
    from rich.table import Table

    from moslim.evaluation.report import fmt, fmt_change, judge_label, objective_order

    policies = metrics["policies"]
    table = Table(title="controllability: requested vs achieved level (CI: paired bootstrap over prompts)")
    for column in ("objective", "judged by", "metric"):
        table.add_column(column)
    for column in ("before RL", "after RL", "change [95% CI]"):
        table.add_column(column, no_wrap=True)
    for source in sources:
        change = metrics.get("rl_change", {}).get(source, {})
        for name in objective_order(metrics, source):
            before = policies.get("base", {}).get("controllability", {}).get(source, {}).get(name)
            after = policies.get("policy", {}).get("controllability", {}).get(source, {}).get(name)
            judge = judge_label(metrics.get("judges", {}), (after or before)["judge"])
            for metric in names:
                table.add_row(name, judge, metric, *(fmt(r[metric]["value"]) if r else "-" for r in (before, after)),
                              fmt_change(change.get(name, {}).get(metric)))
    return table
