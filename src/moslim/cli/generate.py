"""`moslim generate`: completions from a policy with a preference in its prompt."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from moslim.cli.flags import renamed_flag


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("generate", help="answer questions with a policy under a preference",
                            description="Render the preference into the prompt exactly as in training and "
                            "sample completions. One question on the command line, or a JSONL of prompts.")
    parser.add_argument("question", nargs="?", help="a question (or use --input)")
    parser.add_argument("--policy", required=True, help="policy folder (e.g. runs/rl/final) or built-in name")
    parser.add_argument("--prefer", default="", help="preference, e.g. helpfulness=2,verbosity=1 "
                        "(for --input: the default for rows without a 'preference')")
    parser.add_argument("--objectives", help="objectives YAML (needed for a base model; a trained policy has its own)")
    parser.add_argument("--input", help="JSONL of {id, prompt, preference?} rows")
    parser.add_argument("--out", help="JSONL to write {id, prompt, preference, completions}")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.7, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--num-samples", type=int, default=1, help="completions per prompt (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8,
                        help="prompts decoding at once; with the fast engine the next prompts join as rows end "
                             "(continuous batching) (default: 8)")
    parser.add_argument("--engine", default="auto", metavar="{auto,fast,stock}",
                        help="fast: moslim's batched CPU sampler; stock: model.generate; auto: fast on CPU "
                        "(the values of RL's train.rollout)")
    renamed_flag(parser, "--output", "--out", "2026-12-04")
    parser.set_defaults(func=run)


def _read_rows(path: Path, default_preference: str) -> list[dict]:
    from moslim.data.readers import read_jsonl
    from moslim.policy.data import read_prompt_records

    raw = read_jsonl(path)
    records = read_prompt_records(path)  # validates ids and prompts with file:line errors
    rows = []
    for record, row in zip(records, raw):
        preference = row.get("preference", default_preference)
        if isinstance(preference, dict):
            preference = ",".join(f"{k}={v}" for k, v in preference.items())
        rows.append({"id": record.id, "prompt": record.prompt, "preference": preference or ""})
    return rows


def run(args: argparse.Namespace) -> int:
    from moslim.objectives import ObjectiveSet
    from moslim.policy.fast import check_setting
    from moslim.policy.generate import generate_completions
    from moslim.preferences import Preference

    check_setting(args.engine, "--engine")
    if (args.question is None) == (args.input is None):
        raise ValueError("give either a question or --input prompts.jsonl (not both)")
    if args.input and not args.out:
        raise ValueError("--input needs --out completions.jsonl")
    objectives = ObjectiveSet.from_yaml(args.objectives) if args.objectives else None
    rows = _read_rows(Path(args.input), args.prefer) if args.input else \
        [{"id": "cli", "prompt": args.question, "preference": args.prefer}]
    for row in rows:  # the syntax (a repeated objective, a level that is no integer) before the policy loads
        Preference.parse(row["preference"], objectives)
    completions = generate_completions(
        args.policy, [r["prompt"] for r in rows], [r["preference"] for r in rows], objectives=objectives,
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
        num_samples=args.num_samples, seed=args.seed, batch_size=args.batch_size, progress=bool(args.input),
        engine=args.engine)
    if args.input:
        from moslim.data.readers import write_jsonl

        out = write_jsonl(args.out, [{**row, "completions": samples} for row, samples in zip(rows, completions)])
        print(f"wrote {len(rows)} rows to {out}", file=sys.stderr)
    else:
        for i, text in enumerate(completions[0]):
            if len(completions[0]) > 1:
                print(f"--- sample {i + 1}")
            print(text)
    return 0
