"""Are the demo labels learnable? Simple baselines trained on rm_train, scored on rm_eval.

    .venv/bin/python scripts/check_demo_labels.py

Per objective, balanced accuracy (mean recall over levels; chance = 1 / levels) of:
- `length`: logistic regression on the response's log word count alone;
- `words`: logistic regression on hashed word counts of prompt and response, plus length;
- `writer`: the most common training level of the row's writer (the AlpacaEval model / XSTest setup),
  an oracle that knows who wrote the answer: how much of the label a model's style can explain.
About a CPU-minute (3 minutes wall on the 2 shared cores it was written on).
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter, defaultdict

import torch

from moslim.data import read_examples
from moslim.data.demo import DEMO_DIR
from moslim.objectives import ObjectiveSet

BUCKETS = 2048  # hashed vocabulary per field (prompt, response)
WORD = re.compile(r"[a-z0-9']+")


def features(rows, words: bool) -> torch.Tensor:
    """(n, 2 * BUCKETS + 1) hashed log-counts (prompt, response) and log word count; (n, 1) without words."""
    x = torch.zeros(len(rows), 2 * BUCKETS + 1 if words else 1)
    for i, ex in enumerate(rows):
        if words:
            for offset, text in ((0, str(ex.prompt)), (BUCKETS, ex.response)):
                for token, n in Counter(WORD.findall(text.lower())).items():
                    x[i, offset + zlib.crc32(token.encode()) % BUCKETS] = math.log1p(n)
        x[i, -1] = math.log1p(len(ex.response.split()))
    return x


def balanced_accuracy(pred: torch.Tensor, gold: torch.Tensor, classes: int) -> float:
    recalls = [(pred[gold == c] == c).float().mean().item() for c in range(classes) if (gold == c).any()]
    return sum(recalls) / len(recalls)


def linear_probe(x_train, y_train, x_eval, classes: int, steps: int = 200) -> torch.Tensor:
    torch.manual_seed(0)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    model = torch.nn.Linear(x_train.shape[1], classes)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=1e-3)
    weights = (len(y_train) / (classes * torch.bincount(y_train, minlength=classes).clamp(min=1))).float()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model((x_train - mean) / std), y_train, weight=weights).backward()
        opt.step()
    with torch.no_grad():
        return model((x_eval - mean) / std).argmax(-1)


def writer_oracle(train, evaluation, name: str) -> torch.Tensor:
    by_writer = defaultdict(Counter)
    for ex in train:
        by_writer[ex.source][ex.labels[name]] += 1
    overall = Counter(ex.labels[name] for ex in train).most_common(1)[0][0]
    return torch.tensor([by_writer[ex.source].most_common(1)[0][0] if ex.source in by_writer else overall
                         for ex in evaluation])


def main() -> None:
    objectives = ObjectiveSet.from_yaml(DEMO_DIR / "objectives.yaml")
    labelled = ObjectiveSet.from_yaml(DEMO_DIR / "objectives.yaml", with_factors=True)  # rows carry factor labels
    train = read_examples(DEMO_DIR / "rm_train.jsonl.gz", labelled)
    evaluation = read_examples(DEMO_DIR / "rm_eval.jsonl.gz", labelled)
    print(f"balanced accuracy on rm_eval\n{'objective':<14}{'rows tr/ev':>13}{'chance':>8}{'length':>8}"
          f"{'words':>8}{'writer':>8}")
    for obj in objectives:
        tr = [e for e in train if obj.name in e.labels]
        ev = [e for e in evaluation if obj.name in e.labels]
        y_tr = torch.tensor([e.labels[obj.name] for e in tr])
        y_ev = torch.tensor([e.labels[obj.name] for e in ev])
        scores = [balanced_accuracy(linear_probe(features(tr, w), y_tr, features(ev, w), obj.num_levels),
                                    y_ev, obj.num_levels) for w in (False, True)]
        scores.append(balanced_accuracy(writer_oracle(tr, ev, obj.name), y_ev, obj.num_levels))
        print(f"{obj.name:<14}{len(tr):>6}/{len(ev):<6}{1 / obj.num_levels:>8.3f}"
              + "".join(f"{s:>8.3f}" for s in scores))


if __name__ == "__main__":
    main()
