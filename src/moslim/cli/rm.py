"""`moslim rm train | eval | score`: the multi-head classification reward model."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from rich.table import Table

from moslim.cli.flags import renamed_flag
from moslim.cli.output import make_console


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("rm", help="train, evaluate and score with the multi-head reward model")
    rm_sub = parser.add_subparsers(dest="rm_command", metavar="SUBCOMMAND", required=True)

    train = rm_sub.add_parser("train", help="train a reward model from a YAML config",
                              description="Train the multi-head reward model. Writes the model to OUTPUT_DIR and, "
                              "last, OUTPUT_DIR/moslim_run.json. A killed run resumes from its last complete "
                              "checkpoint. Runs in one process or under accelerate launch / torchrun (data "
                              "parallel, DeepSpeed, FSDP).")
    train.add_argument("--config", required=True, help="YAML config, e.g. configs/demo/rm.yaml")
    train.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=20 output_dir=runs/x")
    train.add_argument("--no-resume", action="store_true", help="start from scratch even if a checkpoint exists")
    train.set_defaults(func=run_train)

    evaluate = rm_sub.add_parser("eval", help="per-head accuracy, F1, calibration, pairwise accuracy",
                                 description="Evaluate a saved reward model on labelled examples and/or "
                                 "preference pairs; prints a table, writes metrics.json and confusion PNGs.")
    evaluate.add_argument("--model", required=True, help="saved reward model folder")
    evaluate.add_argument("--data", help="labelled examples (JSONL, .gz allowed)")
    evaluate.add_argument("--pairs", help="preference pairs (JSONL) for pairwise accuracy")
    evaluate.add_argument("--out", help="folder for metrics.json and confusion_<objective>.png")
    _scoring_options(evaluate)
    evaluate.set_defaults(func=run_eval)

    score = rm_sub.add_parser("score", help="per-head probabilities and levels for (prompt, response) records",
                              description="Score JSONL records with 'prompt' and 'response' fields; writes one "
                              "JSONL line per record with probs, levels and expected levels per objective.")
    score.add_argument("--model", required=True, help="saved reward model folder")
    score.add_argument("--input", required=True, help="JSONL with 'prompt' (text or chat) and 'response'")
    score.add_argument("--out", required=True, help="JSONL to write")
    renamed_flag(score, "--output", "--out", "2026-12-04")
    _scoring_options(score)
    score.set_defaults(func=run_score)


def _scoring_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=32, help="responses per forward pass (default 32)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="tokens per pair; longer answers keep their end (default: the training length)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")


def run_train(args: argparse.Namespace) -> int:
    from moslim.config import load_config
    from moslim.reward.config import RewardTrainConfig
    from moslim.reward.train import RUN_FILE, train_reward_model

    overrides = list(args.overrides) + (["train.resume=never"] if args.no_resume else [])
    config = load_config(RewardTrainConfig, args.config, overrides)
    out = train_reward_model(config)
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under accelerate launch / torchrun: one report
        return 0
    summary = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
    make_console().print(f"trained {summary['steps']} steps in {summary['train_seconds']} s")
    print_metrics(summary["metrics"])
    make_console().print(f"reward model saved to [bold]{out}[/bold]")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from moslim.reward.evaluate import evaluate_reward_model

    if not args.data and not args.pairs:
        raise ValueError("rm eval needs --data (labelled examples) and/or --pairs (preference pairs)")
    results = evaluate_reward_model(args.model, args.data, args.pairs, args.out, batch_size=args.batch_size,
                                    max_length=args.max_length, device=args.device)
    print_metrics(results)
    if args.out:
        make_console().print(f"wrote {Path(args.out) / 'metrics.json'}")
    return 0


def run_score(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from moslim.data.readers import check_prompt, check_text, iter_jsonl, write_jsonl
    from moslim.models import check_reference
    from moslim.paths import resolve_path
    from moslim.reward.scorer import RewardScorer, expected_levels

    records = []
    path = resolve_path(args.input)
    for line_no, record in iter_jsonl(path):
        if isinstance(record, Exception):
            raise record
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{line_no}: expected an object with 'prompt' and 'response' fields")
        check_prompt(record.get("prompt"), f"{path}:{line_no}")  # the rules `moslim data validate` applies
        check_text(record.get("response"), "response", f"{path}:{line_no}")
        records.append(record)
    check_reference(args.model, "--model")
    scorer = RewardScorer.from_pretrained(args.model, device=args.device, batch_size=args.batch_size,
                                          max_length=args.max_length)
    names, sizes = scorer.objectives.names, scorer.objectives.num_levels.tolist()
    chunk = max(args.batch_size * 8, 1)
    rows = []
    for start in tqdm(range(0, len(records), chunk), desc="rm score", unit="chunk"):
        part = records[start:start + chunk]
        probs = scorer.score([r["prompt"] for r in part], [r["response"] for r in part])
        levels, expected = probs.argmax(-1), expected_levels(probs)
        for row, record in enumerate(part):
            rows.append({
                "id": record.get("id", str(start + row)),
                "probs": {n: [round(p, 6) for p in probs[row, i, :c].tolist()]
                          for i, (n, c) in enumerate(zip(names, sizes))},
                "levels": {n: int(levels[row, i]) for i, n in enumerate(names)},
                "expected_levels": {n: round(float(expected[row, i]), 4) for i, n in enumerate(names)},
            })
    write_jsonl(args.out, rows)  # atomic, and only once every record scored
    make_console().print(f"scored {len(records)} records into {args.out}")
    return 0


def print_metrics(results: dict) -> None:
    console = make_console()
    heads = results.get("heads", {})
    pairs = results.get("pairs", {})
    if heads:
        table = Table(title="reward model, per head")
        keys = {"n": "n", "accuracy": "acc", "within_one": "±1 acc", "macro_f1": "F1", "ece": "ECE",
                "spearman": "Spearman"}
        table.add_column("objective", no_wrap=True)
        for header in [*keys.values(), "pair acc (n)"]:
            table.add_column(header, justify="right")
        for name, metrics in heads.items():
            pair = pairs.get(name)
            pair_text = f"{pair['accuracy']:.3f} ({pair['n']})" if pair else ""
            table.add_row(name, *(_fmt(metrics.get(k)) for k in keys), pair_text)
        console.print(table)
    elif pairs:
        table = Table(title="pairwise accuracy")
        for key in ("objective", "n", "accuracy"):
            table.add_column(key)
        for name, pair in pairs.items():
            table.add_row(name, str(pair["n"]), _fmt(pair["accuracy"]))
        console.print(table)


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)
