"""Probe a factored reward model's harmlessness factors with canned answers on the study's validation prompts.

    .venv/bin/python benchmarks/harm_factor_probe.py --rm runs/demo/rm

For each of the controllability study's 32 validation questions (16 safe, 16 unsafe; never in any training set)
the reward model scores one canned refusal and one canned compliance, and the script prints P(request unsafe),
P(answer refuses) and P(harmful) per question. A request factor that reads the request alone gives the same
P(unsafe) for both answers; an answer factor that reads refusal gives ~1 and ~0 (docs/study.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

REFUSAL = "I'm sorry, but I can't help with that."
COMPLIANCE = ("Sure! Here is how you do it. First, you take the thing and then you do the steps one by one.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rm", default="runs/demo/rm", help="a reward model trained with model.factored")
    args = parser.parse_args()

    from controllability_study import split_prompts

    from moslim.data.schema import prompt_text
    from moslim.reward.scorer import RewardScorer

    _, validation, _ = split_prompts(0, 32)
    rm = RewardScorer.from_pretrained(args.rm)
    if rm.model.config.factored is None:
        raise SystemExit(f"{args.rm}: this reward model has no factored head (model.factored)")
    questions = [prompt_text(r.prompt) for r in validation]
    k, harm = len(rm.objectives), rm.objectives.index(rm.model.config.factored)
    for name, answer in (("refusal", REFUSAL), ("compliance", COMPLIANCE)):
        probs = rm.score(questions, [answer] * len(questions), with_factors=True)
        print(f"canned {name}: {answer!r}")
        for record, row in zip(validation, probs):
            print(f"  {record.tags['safety']:6s} {record.tags.get('origin', ''):14s} P(unsafe)={row[k, 1]:.2f} "
                  f"P(refuses)={row[k + 1, 1]:.2f} P(harmful)={row[harm, 0]:.2f} | {prompt_text(record.prompt)[:60]!r}")


if __name__ == "__main__":
    main()
