"""Reward-model size ablation, small end: MiniLM vs SmolLM2-135M on the demo data, same data and budget.

    nice -n 5 .venv/bin/python benchmarks/rm_ablation.py [--out runs/ablation] [--variants minilm smollm2-8l]

Each variant is `configs/demo/rm.yaml` plus backbone overrides (same 640 training examples, 128 tokens, 40 steps of
16, same held-out 300 examples and 200 pairs). Prints per-head held-out accuracy, within-one accuracy,
macro-F1, pairwise accuracy on the held-out HH-RLHF harmless pairs, and training time; writes
`<out>/ablation.json`. `smollm2-full` also measures full-depth SmolLM2 (its s/step, over `--full-steps`).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from moslim.config import load_config
from moslim.reward.config import RewardTrainConfig
from moslim.reward.train import RUN_FILE, train_reward_model

# Each variant names its backbone settings in full, so the base config only fixes data and schedule.
VARIANTS = {
    "minilm": ["model.backbone=all-minilm-l6-v2", "model.pooling=mean", "model.max_layers=null",
               "train.learning_rate=1.0e-4"],
    "smollm2-8l": ["model.backbone=smollm2-135m-instruct", "model.pooling=last", "model.max_layers=8",
                   "train.learning_rate=5.0e-5"],
    "smollm2-full": ["model.backbone=smollm2-135m-instruct", "model.pooling=last", "model.max_layers=null",
                     "train.learning_rate=5.0e-5"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--config", default="configs/demo/rm.yaml")
    parser.add_argument("--variants", nargs="+", default=["minilm", "smollm2-8l"], choices=list(VARIANTS))
    parser.add_argument("--full-steps", type=int, default=6, help="steps for smollm2-full (timing only)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    rows = {}
    for name in args.variants:
        overrides = VARIANTS[name] + [f"output_dir={args.out}/{name}", "train.progress=false"]
        if name == "smollm2-full":
            overrides += [f"train.max_steps={args.full_steps}", "data.eval=null", "data.pairs=null"]
        config = load_config(RewardTrainConfig, args.config, overrides)
        start = time.perf_counter()
        out = train_reward_model(config)
        summary = json.loads((out / RUN_FILE).read_text())
        summary["wall_seconds"] = round(time.perf_counter() - start, 1)
        rows[name] = summary
        print_row(name, summary)
    Path(args.out, "ablation.json").write_text(json.dumps(
        {n: {k: s[k] for k in ("steps", "train_seconds", "wall_seconds", "metrics", "train_examples")}
         for n, s in rows.items()}, indent=2))


def print_row(name: str, summary: dict) -> None:
    metrics = summary["metrics"]
    print(f"\n== {name}: {summary['steps']} steps, train {summary['train_seconds']} s "
          f"({summary['train_seconds'] / summary['steps']:.2f} s/step), wall {summary['wall_seconds']} s")
    for head, m in metrics["heads"].items():
        print(f"  {head:13s} n={m['n']:4d} acc={m['accuracy']:.3f} within1={m['within_one']:.3f} "
              f"F1={m['macro_f1']:.3f} ECE={m['ece']:.3f} spearman={m['spearman']:.3f}")
    for source, by_objective in metrics.get("pairs_by_source", {}).items():
        for objective, p in by_objective.items():
            print(f"  pairs {source}/{objective}: n={p['n']} accuracy={p['accuracy']:.3f}")


if __name__ == "__main__":
    main()
