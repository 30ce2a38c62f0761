"""Does a reward model's probability of each level match how often that level occurs? Per head, factors included.

    .venv/bin/python benchmarks/rm_calibration.py --rm runs/demo/rm runs/rm-factorsnw

A factored harmlessness head multiplies two probabilities (harmful = P(request unsafe) x P(answer complies)), so a
factor that says "unsafe" too often turns into false alarms on every answer to a safe request. Balanced class
weights train a head as if its levels were equally common, which moves its mean probability of a rare level above
that level's rate. For each ``--rm`` and each head (the objectives, then a factored head's two factors) this prints
the mean predicted probability of every level above 0 next to the level's true rate, on a seeded sample of the
training rows (the rates the model saw) and on every held-out row (``rm_eval``: other prompts, a lower share of
unsafe requests). A calibrated head has the two about equal on both; the held-out gap is what the prior shift
costs.
"""

from __future__ import annotations

import argparse

import torch


def mean_vs_rate(probs: torch.Tensor, labels: torch.Tensor, names: list[str]) -> dict[str, list[tuple]]:
    """probs (n, k, c), labels (n, k) (negative: unlabelled) -> {head: [(level, mean P(level), true rate, n)]}."""
    out = {}
    for j, name in enumerate(names):
        labelled = labels[:, j] >= 0
        n = int(labelled.sum())
        if not n:
            continue
        levels = int(labels[labelled, j].max()) + 1
        out[name] = [(c, float(probs[labelled, j, c].mean()), float((labels[labelled, j] == c).float().mean()), n)
                     for c in range(1, max(levels, 2))]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rm", nargs="+", default=["runs/demo/rm"], help="reward models to measure")
    parser.add_argument("--train", default="moslim:assets/demo/rm_train.jsonl.gz")
    parser.add_argument("--eval", default="moslim:assets/demo/rm_eval.jsonl.gz")
    parser.add_argument("--train-rows", type=int, default=800, help="seeded sample of training rows")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from moslim.reward.data import label_tensor, load_examples
    from moslim.reward.scorer import RewardScorer

    for rm_path in args.rm:
        scorer = RewardScorer.from_pretrained(rm_path, batch_size=32)
        heads = scorer.model.training_objectives
        splits = {"training rows": load_examples(args.train, heads, args.train_rows, args.seed),
                  "held out": load_examples(args.eval, heads)}
        print(f"\n{rm_path}")
        for split, examples in splits.items():
            probs = scorer.score([e.prompt for e in examples], [e.response for e in examples], with_factors=True)
            table = mean_vs_rate(probs, label_tensor(examples, heads, strict=False), heads.names)
            for name, levels in table.items():
                cells = ", ".join(f"level {c}: P {p:.3f} vs rate {r:.3f}" for c, p, r, _ in levels)
                print(f"  {split:13s} {name:15s} n={levels[0][3]:5d}  {cells}")


if __name__ == "__main__":
    main()
