"""Does the reward model pay for length where the level does not change? On a `moslim eval` run's answers.

    .venv/bin/python benchmarks/reward_length_bias.py --eval runs/demo/eval --rm runs/demo/rm

The demo's RL names harmlessness (always level 1) in about half of its preferences. If the reward model's
P(harmless) rises with an answer's length among answers whose true harmlessness is the same, every such
preference pushes the policy towards longer answers, against a request for a short one. The script scores each
answer of the evaluation (base model and RL policy, every preference) with the reward model and, within strata
whose true level is fixed by the prompt's known safety and the refusal rule, reports Spearman(word count, P) for
P(harmless), P(request unsafe) and P(answer refuses), with a 95% bootstrap interval over prompts: pooled, and within
prompts (each value minus its prompt's mean, so that which prompts get long answers cannot drive it). It also reports
the verbosity head's expected level against the exact level (its own length signal, for scale).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from moslim.data.labelling import word_count
from moslim.data.readers import read_jsonl
from moslim.data.refusal import is_refusal
from moslim.evaluation.controllability import bootstrap_ci

STRATA = {  # name -> (prompt safety, answer refuses): each fixes the true harmlessness level
    "safe prompt, answer complies (harmless)": ("safe", False),
    "unsafe prompt, answer complies (harmful)": ("unsafe", False),
    "unsafe prompt, answer refuses (harmless)": ("unsafe", True),
}


def spearman_ci(groups: list[str], x: np.ndarray, y: np.ndarray, resamples: int) -> dict[str, float]:
    def stat(idx: np.ndarray) -> float:
        if len(np.unique(x[idx])) < 2 or len(np.unique(y[idx])) < 2:
            return float("nan")
        return float(spearmanr(x[idx], y[idx]).statistic)

    low, high = bootstrap_ci(groups, stat, num_resamples=resamples)
    return {"rho": round(stat(np.arange(len(x))), 3), "ci": [round(low, 3), round(high, 3)]}


def demeaned(groups: list[str], values: np.ndarray) -> np.ndarray:
    """``values`` minus the mean of their group (one prompt's answers): what is left varies within a prompt."""
    _, codes = np.unique(np.asarray(groups, dtype=object), return_inverse=True)
    means = np.bincount(codes, weights=values) / np.bincount(codes)
    return values - means[codes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", default="runs/demo/eval", help="a `moslim eval` output folder (generations-*.jsonl)")
    parser.add_argument("--rm", default="runs/demo/rm", help="a reward model trained with model.factored")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--out", default=None, help="write the figures as JSON here too")
    args = parser.parse_args()

    from moslim.reward.scorer import RewardScorer

    rows = [r for p in sorted(Path(args.eval).glob("generations-*.jsonl")) for r in read_jsonl(p)]
    if not rows:
        raise SystemExit(f"{args.eval}: no generations-*.jsonl (run `moslim eval` first)")
    scorer = RewardScorer.from_pretrained(args.rm)
    names = scorer.model.training_objectives.names
    probs = []
    for start in range(0, len(rows), 64):
        batch = rows[start:start + 64]
        with torch.no_grad():
            probs.append(scorer.score([r["question"] for r in batch], [r["completion"] for r in batch],
                                      with_factors=True))
    probs = torch.cat(probs).numpy()
    words = np.array([word_count(r["completion"]) for r in rows], dtype=float)
    refuses = np.array([is_refusal(r["completion"]) for r in rows])
    safety = np.array([(r.get("tags") or {}).get("safety") for r in rows])
    groups = [f'{r["policy"]}/{r["prompt_id"]}' for r in rows]

    signals = {"P(harmless)": probs[:, names.index("harmlessness"), 1]}
    for factor, level, label in (("unsafe_request", 1, "P(request unsafe)"), ("refusal", 1, "P(answer refuses)")):
        if factor in names:
            signals[label] = probs[:, names.index(factor), level]
    result: dict[str, dict] = {}
    print(f"{len(rows)} answers ({args.eval}), reward model {args.rm}")
    for stratum, (kind, refused) in STRATA.items():
        keep = np.flatnonzero((safety == kind) & (refuses == refused))
        if len(keep) < 10:
            print(f"{stratum}: {len(keep)} answers, too few")
            continue
        g = [groups[i] for i in keep]
        entry = {"n": int(len(keep)), "median_words": float(np.median(words[keep]))}
        for label, values in signals.items():
            entry[label] = {"mean": round(float(values[keep].mean()), 3),
                            **spearman_ci(g, words[keep], values[keep], args.resamples),
                            "within_prompt": spearman_ci(g, demeaned(g, words[keep]), demeaned(g, values[keep]),
                                                         args.resamples)}
        result[stratum] = entry
        print(f"\n{stratum}: n={entry['n']}, median {entry['median_words']:.0f} words")
        for label in signals:
            e = entry[label]
            w = e["within_prompt"]
            print(f"  {label:<18} mean {e['mean']:.3f}   Spearman with word count {e['rho']:+.3f} "
                  f"[{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}]   within prompt {w['rho']:+.3f} "
                  f"[{w['ci'][0]:+.3f}, {w['ci'][1]:+.3f}]")
    if "verbosity" in names:
        v = names.index("verbosity")
        expected = (probs[:, v, :4] * np.arange(4)).sum(-1)
        result["verbosity E[level] vs words"] = spearman_ci(groups, words, expected, args.resamples)
        e = result["verbosity E[level] vs words"]
        print(f"\nfor scale, verbosity head E[level] vs word count, all answers: {e['rho']:+.3f} "
              f"[{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}]")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
