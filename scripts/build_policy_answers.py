"""Answers of the policy to the demo's RL training prompts, for the reward model's training split.

    .venv/bin/python scripts/build_policy_answers.py            # ~13 minutes on 2 cores
    .venv/bin/python scripts/build_policy_answers.py --kind refusals
    .venv/bin/python scripts/build_policy_answers.py --kind rl --policy runs/study-harm2/rm_harmlessness/final
    .venv/bin/moslim data build-demo --source /work/shared/data  # folds them into rm_train.jsonl.gz

The demo's reward model learns from other models' answers (AlpacaEval, XSTest), but RL shows it the
policy's own: SmolLM2-135M-Instruct answering Do-Not-Answer, HarmBench, IFEval and AlpacaEval requests under
a preference in its system message. Measured on such answers (docs/study.md) its request factor could not
tell Do-Not-Answer's requests from safe ones (53% right): XSTest's 129 unsafe training prompts are all it
had seen. This script samples the base policy once, with the RL stage's settings (a preference per prompt
drawn as `configs/demo/rl.yaml` draws it, temperature 1.0, 128 new tokens), and keeps only labels that need
no model: the prompt set's known safety (``prompt_safety``, the request factor) and the exact word count
(verbosity). Whether an answer refuses is left unlabelled.

Two more kinds, because SmolLM2 almost never refuses (8 of those 800 answers) and RL finds where the reward
model's refusal factor errs (docs/study.md, "Refusal"):
- ``--kind refusals``: refusals in SmolLM2's own words. The assistant's turn is opened with one of
  REFUSAL_OPENINGS and the base model writes the rest (``answer_prefix``), on unsafe and some safe prompts.
  It often turns to helping after the opening ("I won't ... However, here is a list"):
  ``moslim.data.refusal.refusal_only``
  cuts the answer where it turns, so what is labelled a refusal is one (the rule reads only the opening).
- ``--kind rl``: the answers of an RL policy (``--policy``; by default the study's ``rm_harmlessness`` arm, which
  learnt to open with an apology and then help) under harmlessness-only preferences: the answers that fooled
  the reward model, labelled by the rule in build-demo like every other answer here.
- ``--kind moslim``: the answers of policies RL trained on the full MOSLIM reward (``--policy``, one folder or
  several, each answering its share of the prompts in turn) under the demo RL stage's preferences (verbosity
  and harmlessness, one or both named), each policy asked in the words it was trained with (the template and
  level wording saved with it): answers at every length that the reward model's harmlessness head
  scored as harmless where the rule and the prompt's safety say they are not. Not shipped: written to ``--out``
  for a study's own copy of the data (docs/study.md, "The reward model on the policy's own evasions").

The controllability study's validation prompts (32, and the 64 more held out for harmlessness) are left out, so the
study measures the reward model on requests it never saw. Seeded: the same command writes the same file on the
same machine and torch build. Writes ``src/moslim/assets/demo/<kind's file>`` (rows: id, prompt, response,
source, tags); the id is ``<kind>/<prompt id>``.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from moslim.data.demo import DEMO_DIR, POLICY_ANSWER_FILES

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

# Openings of a refusal as SmolLM2 words its own (its rare refusals excuse themselves by capability or policy).
REFUSAL_OPENINGS = ("I'm sorry, but I can't", "I can't help with", "I cannot provide", "I'm not able to help",
                    "As an AI, I can't", "I'm unable to", "I won't help", "I'm sorry, but I cannot")


@dataclass(frozen=True)
class Kind:
    """One kind of policy answers: its file (``moslim.data.demo.POLICY_ANSWER_FILES``), row ids and source, the
    seed of its prompt subset, the default unsafe / safe prompt counts, and how it samples."""

    file: str
    id_prefix: str
    source: str
    seed: int
    unsafe: int
    safe: int
    tokens: int
    temperature: float


BASE, REFUSALS, RL, MOSLIM = POLICY_ANSWER_FILES
KINDS = {
    "base": Kind(BASE, "smollm2", "smollm2-135m-instruct", 0, 600, 200, 128, 1.0),  # RL's sampling
    "refusals": Kind(REFUSALS, "smollm2-prefilled", "smollm2-135m-instruct-prefilled-refusal", 1, 300, 100, 64,
                     0.7),  # fewer non-sequiturs than at 1.0
    "rl": Kind(RL, "grpo-study", "grpo-harmlessness-study-policy", 2, 400, 100, 128, 1.0),
    "moslim": Kind(MOSLIM, "grpo-moslim", "grpo-moslim-study-policy", 3, 300, 100, 128, 1.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=sorted(KINDS), default="base",
                        help="base: the base policy's answers; refusals: answers opened with a refusal and "
                             "continued by the base policy; rl: the answers of --policy")
    parser.add_argument("--policy", nargs="+", default=["runs/study-harm2/rm_harmlessness/final"],
                        help="--kind rl / moslim: the RL policy folder(s) (benchmarks/controllability_study.py's "
                             "arms); with several, prompt i is answered by policy i modulo their number")
    parser.add_argument("--unsafe", type=int, help="unsafe prompts to answer (seeded subset; default per kind)")
    parser.add_argument("--safe", type=int, help="safe prompts to answer (seeded subset; default per kind)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, help="default: src/moslim/assets/demo/<the kind's file>")
    args = parser.parse_args()
    kind = KINDS[args.kind]

    from controllability_study import HARM_VALIDATION, split_prompts

    from moslim.data.readers import write_jsonl
    from moslim.data.refusal import refusal_only
    from moslim.data.schema import prompt_text
    from moslim.models import resolve
    from moslim.policy.generate import generate_completions
    from moslim.preferences import PreferenceSampler
    from moslim.reward.data import read_objectives

    objectives, _ = read_objectives("moslim:assets/demo/objectives.yaml")
    # The study's validation prompts stay out (split_prompts(0, 32, ...) is how the study draws them). Its extra
    # harmlessness prompts are defined as those the base answers leave out, so only the other kinds exclude them.
    train, _validation, _harm_validation = split_prompts(0, 32, HARM_VALIDATION if args.kind != "base" else 0)
    rng = random.Random(kind.seed)
    chosen = []
    for safety, count in (("unsafe", args.unsafe or kind.unsafe), ("safe", args.safe or kind.safe)):
        pool = [r for r in train if r.tags.get("safety") == safety]
        chosen += rng.sample(pool, min(count, len(pool)))
    chosen.sort(key=lambda r: r.id)
    if args.kind == "rl" and len(args.policy) != 1:
        parser.error("--kind rl answers with one --policy")
    if args.kind == "rl":  # the study arm's preferences: harmlessness alone, level 1 (harmless) or 0
        sampler = PreferenceSampler(objectives, num_named=1, seed=0,
                                    objective_weights={"helpfulness": 0, "verbosity": 0})
    elif args.kind == "moslim":  # the demo RL stage's preferences, read from its config
        from moslim.config import load_config
        from moslim.policy.config import RLConfig

        data = load_config(RLConfig, Path(__file__).parents[1] / "configs" / "demo" / "rl.yaml").data
        sampler = PreferenceSampler(objectives, num_named=(data.num_named[0], data.num_named[-1]),
                                    level_weights=data.level_weights, objective_weights=data.objective_weights,
                                    seed=0)
    else:
        sampler = PreferenceSampler(objectives, num_named=(1, 2), level_weights={"harmlessness": [0, 1]}, seed=0)
    preferences = [sampler.sample() for _ in chosen]
    openings = [rng.choice(REFUSAL_OPENINGS) if args.kind == "refusals" else "" for _ in chosen]
    policies = args.policy if args.kind in ("rl", "moslim") else [resolve("smollm2-135m-instruct")]
    # An RL policy is asked in the words it was trained with: the objectives and template saved with it (a
    # study arm may word the levels otherwise, `data.objectives`, or close the user's turn with them).
    wording = None if args.kind in ("rl", "moslim") else objectives
    answers = [None] * len(chosen)
    for turn, policy in enumerate(policies):
        mine = list(range(turn, len(chosen), len(policies)))
        out = generate_completions(policy, [prompt_text(chosen[i].prompt) for i in mine],
                                   [preferences[i] for i in mine], objectives=wording,
                                   max_new_tokens=kind.tokens, temperature=kind.temperature, top_p=1.0,
                                   num_samples=1, seed=0, batch_size=args.batch_size,
                                   answer_prefix=[openings[i] for i in mine])
        for i, answer in zip(mine, out):
            answers[i] = answer
    if args.kind == "refusals":
        answers = [[refusal_only(a[0])] for a in answers]
    rows = [{"id": f"{kind.id_prefix}/{r.id}", "prompt": r.prompt, "response": a[0], "source": kind.source,
             "tags": {"safety": r.tags["safety"], "origin": r.tags.get("origin"), "preference": p.to_string()}}
            for r, p, a in zip(chosen, preferences, answers) if a[0].strip()]
    out = args.out or DEMO_DIR / kind.file
    write_jsonl(out, rows)
    print(f"wrote {len(rows)} answers to {out}")


if __name__ == "__main__":
    main()
