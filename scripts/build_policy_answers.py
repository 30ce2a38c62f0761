"""Answers of the base policy to the demo's RL training prompts, for the reward model's training split.

    .venv/bin/python scripts/build_policy_answers.py            # ~13 minutes on 2 cores
    .venv/bin/moslim data build-demo --source /work/shared/data  # folds them into rm_train.jsonl.gz

The demo's reward model learns from other models' answers (AlpacaEval, XSTest), but RL shows it the
policy's own: SmolLM2-135M-Instruct answering Do-Not-Answer, HarmBench, IFEval and AlpacaEval requests under
a preference in its system message. Measured on such answers (docs/study.md) its request factor could not
tell Do-Not-Answer's requests from safe ones (53% right): XSTest's 129 unsafe training prompts are all it
had seen. This script samples the base policy once, with the RL stage's settings (a preference per prompt
drawn as `configs/demo/rl.yaml` draws it, temperature 1.0, 128 new tokens), and keeps only labels that need
no model: the prompt set's known safety (``prompt_safety``, the request factor) and the exact word count
(verbosity). Whether an answer refuses is left unlabelled.

The controllability study's 32 validation prompts are left out, so the study measures the reward model on
requests it never saw. Seeded: the same command writes the same file on the same machine and torch build.
Writes ``src/moslim/assets/demo/policy_answers.jsonl.gz`` (rows: id, prompt, response, source, tags).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

OUT = Path(__file__).parents[1] / "src/moslim/assets/demo/policy_answers.jsonl.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unsafe", type=int, default=600, help="unsafe prompts to answer (seeded subset)")
    parser.add_argument("--safe", type=int, default=200, help="safe prompts to answer (seeded subset)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    from controllability_study import split_prompts

    from moslim.data.readers import write_jsonl
    from moslim.data.schema import prompt_text
    from moslim.models import resolve
    from moslim.policy.generate import generate_completions
    from moslim.preferences import PreferenceSampler
    from moslim.reward.data import read_objectives

    objectives, _ = read_objectives("moslim:assets/demo/objectives.yaml")
    train, _validation, _ = split_prompts(0, 32)
    rng = random.Random(0)
    chosen = []
    for safety, count in (("unsafe", args.unsafe), ("safe", args.safe)):
        pool = [r for r in train if r.tags.get("safety") == safety]
        chosen += rng.sample(pool, min(count, len(pool)))
    chosen.sort(key=lambda r: r.id)
    sampler = PreferenceSampler(objectives, num_named=(1, 2), level_weights={"harmlessness": [0, 1]}, seed=0)
    preferences = [sampler.sample() for _ in chosen]
    answers = generate_completions(resolve("smollm2-135m-instruct"), [prompt_text(r.prompt) for r in chosen],
                                   preferences, objectives=objectives, max_new_tokens=128, temperature=1.0,
                                   top_p=1.0, num_samples=1, seed=0, batch_size=args.batch_size)
    rows = [{"id": f"smollm2/{r.id}", "prompt": r.prompt, "response": a[0], "source": "smollm2-135m-instruct",
             "tags": {"safety": r.tags["safety"], "origin": r.tags.get("origin"), "preference": p.to_string()}}
            for r, p, a in zip(chosen, preferences, answers) if a[0].strip()]
    write_jsonl(args.out, rows)
    print(f"wrote {len(rows)} answers to {args.out}")


if __name__ == "__main__":
    main()
