"""Inside GRPO's groups: does the full reward still rank answers by the verbosity asked for? Dilution, measured.

GRPO learns only from how the reward ranks the answers of one group (one prompt, one preference). When a preference
names verbosity and harmlessness, the demo's reward is the mean of the two objectives' mapped rewards, so the
harmlessness term's spread inside a group can re-order answers that verbosity alone would order. This samples
groups as RL does -- the study's RL prompts (never its validation prompts), half safe and half unsafe, each under
the preference verbosity=L, harmlessness=1 (L cycling 0-3 over the prompts), ``--samples`` answers at the RL
temperature -- and scores every answer with each ``--rm`` through the RL stage's mapping (``expected_level``).
Against exact labels (the word count's level; the refusal rule x the prompt's known safety) it prints per prompt
kind and reward model:
- **pairwise verbosity accuracy**: over the pairs of answers in a group whose word counts lie at different distances
  from the requested level, the share that the reward puts in the right order (ties count half), for the verbosity
  term alone and for the full reward; the drop from one to the other is the dilution, the gap below 1 of the first
  the verbosity head's error where GRPO uses it;
- each term's spread inside groups (mean within-group standard deviation), and how often the judge's harmlessness
  varies inside a group at all (where it does not, the harmlessness term's spread is noise to the judge);
- the harmlessness term's within-group correlation with the word count (does it pay for length?).
Each figure has a 95% bootstrap interval over prompts (``bootstrap_ci``); with several ``--rm`` the later ones'
pairwise accuracies also as a paired change against the first, on the same answers; with several ``--methods``
every reward model is scored through each mapping (``--answers`` scores the groups an earlier ``--json`` stored).

    .venv/bin/python benchmarks/group_dilution.py --rm runs/demo/rm runs/rm-len2 --per-kind 32 --json runs/groups.json
    .venv/bin/python benchmarks/group_dilution.py --answers runs/groups.json --methods expected_level zscore
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from controllability_study import HARM_VALIDATION, demo_labelling, split_prompts  # noqa: E402

from moslim.evaluation.controllability import bootstrap_ci  # noqa: E402


def terms(probs: torch.Tensor, objectives, targets: dict[str, list[int]],
          method: str = "expected_level") -> dict[str, np.ndarray]:
    """Each named objective's mapped reward alone, and the full reward (their mean), per answer, through ``method``
    (the RL stage's ``reward.method``; its default options). ``targets`` {objective: level per answer}."""
    from moslim.reward.mapping import map_rewards

    b, k = probs.shape[0], len(objectives)
    target = torch.zeros(b, k, dtype=torch.long)
    out, full_mask = {}, torch.zeros(b, k)
    for name, levels in targets.items():
        i = objectives.index(name)
        target[:, i] = torch.as_tensor(levels)
        mask = torch.zeros(b, k)
        mask[:, i] = full_mask[:, i] = 1.0
        out[name] = mask
    rewards = {name: map_rewards(probs, target, mask, objectives.num_levels, method=method).numpy()
               for name, mask in out.items()}
    rewards["full"] = map_rewards(probs, target, full_mask, objectives.num_levels, method=method).numpy()
    return rewards


def pair_rows(group: np.ndarray, truth: np.ndarray) -> list[tuple[int, int]]:
    """Index pairs (better, worse) inside each group whose true reward differs; ``group`` the group id per answer."""
    pairs = []
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        for i, j in itertools.combinations(rows, 2):
            if truth[i] != truth[j]:
                pairs.append((i, j) if truth[i] > truth[j] else (j, i))
    return pairs


def pairwise_accuracy(reward: np.ndarray, pairs: list[tuple[int, int]]) -> float:
    """Share of (better, worse) pairs the reward orders right; ties count half. NaN without pairs."""
    if not pairs:
        return float("nan")
    better, worse = np.asarray(pairs).T
    return float(np.mean((reward[better] > reward[worse]) + 0.5 * (reward[better] == reward[worse])))


def within_group(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Each value minus its group's mean."""
    out = values.astype(float).copy()
    for g in np.unique(group):
        rows = group == g
        out[rows] -= out[rows].mean()
    return out


def group_sd(values: np.ndarray, group: np.ndarray) -> float:
    """The mean over groups of each group's standard deviation: how far a reward spreads inside a group."""
    return float(np.mean([values[group == g].std() for g in np.unique(group)]))


def summary(group: np.ndarray, words: np.ndarray, truth: dict[str, np.ndarray], rewards: dict[str, dict],
            num_resamples: int = 1000) -> dict:
    """The figures above for one prompt kind: ``truth`` {verbosity, harmlessness} exact rewards per answer,
    ``rewards`` {rm: {verbosity, harmlessness, full}} per answer."""
    pairs = pair_rows(group, truth["verbosity"])
    pair_group = np.asarray([group[i] for i, _ in pairs])

    def interval(statistic) -> list[float]:
        return list(bootstrap_ci(pair_group, statistic, num_resamples)) if pairs else [float("nan")] * 2

    def accuracy(reward, rows=None) -> float:
        chosen = pairs if rows is None else [pairs[r] for r in rows]
        return pairwise_accuracy(reward, chosen)

    out = {"answers": int(group.size), "groups": int(np.unique(group).size), "verbosity_pairs": len(pairs),
           "groups_judged_harmlessness_varies": int(sum(np.ptp(truth["harmlessness"][group == g]) > 0
                                                        for g in np.unique(group))),
           "exact_sd": {name: group_sd(t, group) for name, t in truth.items()},
           "models": {}}
    first = None
    for path, reward in rewards.items():
        model = {"sd": {name: group_sd(r, group) for name, r in reward.items()}}
        for name in ("verbosity", "full"):
            model[f"pairwise_{name}"] = {"value": accuracy(reward[name]),
                                         "ci": interval(lambda rows, r=reward[name]: accuracy(r, rows))}
        model["dilution"] = {"value": model["pairwise_verbosity"]["value"] - model["pairwise_full"]["value"],
                             "ci": interval(lambda rows, r=reward: accuracy(r["verbosity"], rows)
                                            - accuracy(r["full"], rows))}
        harm, length = within_group(reward["harmlessness"], group), within_group(words, group)
        model["harmlessness_vs_words_within_group"] = (float(np.corrcoef(harm, length)[0, 1])
                                                       if harm.std() > 0 and length.std() > 0 else float("nan"))
        if first is not None:
            for name in ("verbosity", "full"):
                model[f"pairwise_{name}_change_vs_first"] = {
                    "value": accuracy(reward[name]) - accuracy(first[name]),
                    "ci": interval(lambda rows, new=reward[name], old=first[name]: accuracy(new, rows)
                                   - accuracy(old, rows))}
        first = first if first is not None else reward
        out["models"][path] = model
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rm", nargs="+", default=["runs/demo/rm"],
                        help="reward models scoring the same answers; later ones are compared with the first")
    parser.add_argument("--policy", default="smollm2-135m-instruct",
                        help="the policy that samples the groups (default: the base model RL starts from)")
    parser.add_argument("--per-kind", type=int, default=32, help="RL prompts per kind (safe, unsafe)")
    parser.add_argument("--samples", type=int, default=4, help="answers per group (the RL's num_generations)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0, help="which RL prompts, and the sampling")
    parser.add_argument("--methods", nargs="+", default=["expected_level"],
                        help="mappings to compare on the same answers (moslim.reward.mapping.METHODS; default: the "
                             "demo's expected_level)")
    parser.add_argument("--answers", type=Path,
                        help="score the groups stored in an earlier run's --json instead of sampling new ones")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the figures and answers to this file")
    args = parser.parse_args()

    from moslim.data.labelling import verbosity_level
    from moslim.data.refusal import is_refusal
    from moslim.data.schema import prompt_text
    from moslim.policy.generate import generate_completions
    from moslim.preferences import Preference
    from moslim.reward.scorer import RewardScorer

    objectives, spec = demo_labelling()
    levels = objectives["verbosity"].num_levels
    train, _, _ = split_prompts(0, 32, HARM_VALIDATION)  # the study's RL prompts: its validation ones left out
    rng = random.Random(args.seed)
    stored = json.loads(args.answers.read_text()) if args.answers else None
    by_id = {r.id: r for r in train}
    for kind in ("safe", "unsafe") if stored is not None else ():
        if "rows" not in stored.get(kind, {}):
            parser.error(f"{args.answers}: no stored {kind} groups (write them with --json)")
        unknown = sorted({p for p in stored[kind]["rows"]["prompt"] if p not in by_id})
        if unknown:
            parser.error(f"{args.answers}: {len(unknown)} prompts are not the study's RL prompts, e.g. {unknown[0]}")
    scorers = {path: RewardScorer.from_pretrained(path) for path in args.rm}
    result = {"settings": {k: str(v) for k, v in vars(args).items()}}
    for kind in ("safe", "unsafe"):
        if stored is not None:
            rows = stored[kind]["rows"]
            answers, target = rows["answer"], np.asarray(rows["requested"])
            order = {p: i for i, p in enumerate(dict.fromkeys(rows["prompt"]))}
            records = [by_id[p] for p in order]
            group = np.asarray([order[p] for p in rows["prompt"]])
        else:
            records = rng.sample([r for r in train if r.tags.get("safety") == kind], args.per_kind)
            requested = [i % levels for i in range(len(records))]
            prefs = [Preference.of(verbosity=lv, harmlessness=1) for lv in requested]
            outputs = generate_completions(args.policy, [prompt_text(r.prompt) for r in records], prefs,
                                           objectives=objectives, max_new_tokens=args.tokens, temperature=1.0,
                                           top_p=1.0, num_samples=args.samples, seed=args.seed, batch_size=24,
                                           progress=False)
            answers = [a for group in outputs for a in group]
            group = np.repeat(np.arange(len(records)), args.samples)
            target = np.asarray(requested)[group]
        questions = [prompt_text(records[g].prompt) for g in group]
        words = np.asarray([len(a.split()) for a in answers])
        true_level = np.asarray([verbosity_level(a, spec) for a in answers])
        harmless = np.asarray([kind == "safe" or is_refusal(a) for a in answers], dtype=float)
        truth = {"verbosity": -np.abs(true_level - target) / (levels - 1), "harmlessness": harmless - 1}
        rewards = {}
        for path, scorer in scorers.items():
            with torch.no_grad():
                probs = scorer.score(questions, answers).float()
            for method in args.methods:
                label = path if len(args.methods) == 1 else f"{path} {method}"
                rewards[label] = terms(probs, scorer.objectives, {"verbosity": target.tolist(),
                                                                   "harmlessness": [1] * len(answers)}, method)
        result[kind] = summary(group, words, truth, rewards, args.resamples)
        result[kind]["refused"] = float(np.mean([is_refusal(a) for a in answers]))
        result[kind]["mean_words"] = float(words.mean())
        if args.json:
            result[kind]["rows"] = {"prompt": [records[g].id for g in group], "requested": target.tolist(),
                                    "answer": answers}
    for kind in ("safe", "unsafe"):
        r = result[kind]
        print(f"{kind}: {r['groups']} groups, {r['verbosity_pairs']} verbosity pairs, judged harmlessness varies "
              f"in {r['groups_judged_harmlessness_varies']}, refused {r['refused']:.2f}, {r['mean_words']:.0f} words")
        for path, m in r["models"].items():
            pv, pf, d = m["pairwise_verbosity"], m["pairwise_full"], m["dilution"]
            text = (f"  {path}: pairwise verbosity term {pv['value']:.3f} [{pv['ci'][0]:.3f}, {pv['ci'][1]:.3f}], "
                    f"full reward {pf['value']:.3f} [{pf['ci'][0]:.3f}, {pf['ci'][1]:.3f}], dilution "
                    f"{d['value']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]; sd in group verbosity "
                    f"{m['sd']['verbosity']:.3f} / harmlessness {m['sd']['harmlessness']:.3f}; harmlessness vs "
                    f"words {m['harmlessness_vs_words_within_group']:+.2f}")
            for name in ("verbosity", "full"):
                c = m.get(f"pairwise_{name}_change_vs_first")
                if c:
                    text += f"; {name} vs first {c['value']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]"
            print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
