"""Who says an answer refuses? The string-match rule against human labels and against the judge model.

    .venv/bin/python benchmarks/refusal_rule.py --judge runs/demo/judge --eval runs/demo/eval \
        --xstest ../shared/data/xstest --rm runs/demo/rm

1. On labelled completions: the judge's held-out split (XSTest completions, human labels; shipped) and, with
   ``--xstest``, every XSTest v2 completion file (5 models x 450, human ``final_label``: full compliance = 0,
   full or partial refusal = 1): accuracy and macro-F1 of the rule, and of the judge model's refusal head.
2. On the policy's own answers (``--eval``: the generations of a ``moslim eval`` run, base and RL policy):
   how often each calls an answer a refusal, how often they agree, and a seeded sample of the disagreements
   to read (``--show``); with ``--rm``, the reward model's refusal factor too.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

import torch

from moslim.data.refusal import is_refusal
from moslim.evaluation.judges import labelled_refusals, refusal_scores

SHIPPED = Path(__file__).resolve().parents[1] / "src" / "moslim" / "assets" / "demo" / "judge_eval.jsonl.gz"


def scores(labels: list[int], predicted: list[int]) -> dict[str, float]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in refusal_scores(labels, predicted).items()}


def judge_refusals(judge: str | None, prompts: list[str], responses: list[str]) -> list[int] | None:
    if not judge:
        return None
    from moslim.evaluation.judges import ModelJudge

    model = ModelJudge.from_path(judge, name="judge", only=["refusal"], batch_size=32)
    return model.levels(prompts, responses)["refusal"]


def rm_refusals(rm: str | None, prompts: list[str], responses: list[str]) -> list[int] | None:
    """The reward model's refusal factor (argmax), for a model with ``factored: harmlessness``."""
    if not rm:
        return None
    from moslim.reward.scorer import RewardScorer

    scorer = RewardScorer.from_pretrained(rm)
    names = scorer.model.training_objectives.names
    if "refusal" not in names:
        return None
    i, out = names.index("refusal"), []
    for start in range(0, len(responses), 32):
        with torch.no_grad():
            probs = scorer.score(prompts[start:start + 32], responses[start:start + 32], with_factors=True)
        out += probs[:, i, :2].argmax(-1).tolist()
    return out


def labelled_sets(xstest: str | None) -> dict[str, list[tuple[str, str, int]]]:
    """name -> [(prompt, response, refused)]"""
    sets = {"judge_eval (shipped, XSTest held out)": labelled_refusals(SHIPPED)}
    for path in sorted(Path(xstest).glob("xstest_v2_completions_*.csv")) if xstest else []:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        sets[f"XSTest {path.stem.split('_')[3]}"] = [
            (r["prompt"], r["completion"], int(r["final_label"] != "1_full_compliance")) for r in rows]
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge", default="runs/demo/judge", help="judge folder with a refusal head, or ''")
    parser.add_argument("--eval", default="runs/demo/eval", help="a `moslim eval` output folder, or ''")
    parser.add_argument("--rm", default="", help="also the reward model's refusal factor on the policy's answers")
    parser.add_argument("--xstest", default="", help="folder with XSTest's v2 completion CSVs (optional)")
    parser.add_argument("--show", type=int, default=12, help="disagreements to print from the RL policy's answers")
    parser.add_argument("--out", default="", help="write the figures as JSON here")
    args = parser.parse_args()

    result: dict = {"labelled": {}, "policy_answers": {}}
    for name, rows in labelled_sets(args.xstest).items():
        labels = [r for _, _, r in rows]
        entry = {"rule": scores(labels, [int(is_refusal(text)) for _, text, _ in rows])}
        judged = judge_refusals(args.judge, [p for p, _, _ in rows], [t for _, t, _ in rows])
        if judged is not None:
            entry["judge"] = scores(labels, judged)
        result["labelled"][name] = entry
        print(f"{name}: {json.dumps(entry)}")

    for label in ("base", "policy") if args.eval else ():
        path = Path(args.eval) / f"generations-{label}.jsonl"
        if not path.exists():
            continue
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        rule = [int(is_refusal(r["completion"])) for r in rows]
        judged = judge_refusals(args.judge, [r["question"] for r in rows], [r["completion"] for r in rows])
        entry = {"n": len(rows), "rule_refusals": round(sum(rule) / len(rows), 3)}
        if judged is not None:
            entry |= {"judge_refusals": round(sum(judged) / len(rows), 3),
                      "agreement": round(sum(a == b for a, b in zip(rule, judged)) / len(rows), 3),
                      "judge_only": sum(b and not a for a, b in zip(rule, judged)),
                      "rule_only": sum(a and not b for a, b in zip(rule, judged))}
            if label == "policy" and args.show:
                differ = [(r, a, b) for r, a, b in zip(rows, rule, judged) if a != b]
                for row, a, b in random.Random(0).sample(differ, min(args.show, len(differ))):
                    opening = " ".join(row["completion"].split()[:30])
                    print(f"  rule {a} judge {b} [{row['tags'].get('safety')}] {opening}")
        by_rm = rm_refusals(args.rm, [r["question"] for r in rows], [r["completion"] for r in rows])
        if by_rm is not None:
            entry |= {"rm_refusals": round(sum(by_rm) / len(rows), 3),
                      "rm_agreement_with_rule": round(sum(a == b for a, b in zip(rule, by_rm)) / len(rows), 3)}
            if judged is not None:
                entry["rm_agreement_with_judge"] = round(sum(a == b for a, b in zip(judged, by_rm)) / len(rows), 3)
        result["policy_answers"][label] = entry
        print(f"{label} answers ({path}): {json.dumps(entry)}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
