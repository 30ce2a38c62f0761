"""Reward models side by side on the same answers of RL policies: a reward-model lever measured without RL.

    .venv/bin/python benchmarks/rm_on_policy_answers.py --rm runs/demo/rm runs/rm-aug \
        --arms runs/study-old-s1/moslim.json runs/study-old-s2/moslim.json

Every ``benchmarks/controllability_study.py`` arm keeps its policy's answers to the harmlessness validation prompts
(asked for harmlessness 1 and 0: 192 answers of all lengths per arm). Those answers are out of every reward model's
training data (the study's validation prompts are never in it) and written by policies that RL pushed wherever
their own reward model was wrong, so they show whether a reward model is right where RL goes. Each ``--rm`` scores
all of them; against exact labels -- the word count for verbosity, the refusal rule for the answer factor (a
factored harmlessness head), the rule x the prompt's known safety for harmlessness -- it prints accuracy and
macro-F1 per figure, and for every later ``--rm`` its accuracy minus the first one's with a paired bootstrap
interval over prompts (``bootstrap_ci``, one draw for both models). The verbosity figures are also given per true
level, where a head's errors between neighbouring levels show.

An arm whose policy answered prompts a reward model was trained on does not test that model fairly: the study's
validation prompts are kept out of every reward model's data, but the policies of the arms given to
``scripts/build_policy_answers.py`` wrote the data of the models trained on it (``--exclude`` leaves arms out of the
figures and says so).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from moslim.evaluation.controllability import bootstrap_ci


def read_answers(arm_paths: list[Path]) -> dict:
    """The stored harmlessness answers of every arm: parallel lists, ``arm`` naming the file each came from."""
    out = {"arm": [], "prompt": [], "safety": [], "refused": [], "answer": []}
    for path in arm_paths:
        after = json.loads(path.read_text())["after"]
        if "harmlessness" not in after or "answer" not in after["harmlessness"]["rows"]:
            raise ValueError(f"{path}: no stored harmlessness answers (a study arm run with them is needed)")
        rows = after["harmlessness"]["rows"]
        out["arm"] += [str(path)] * len(rows["answer"])
        for key in ("prompt", "safety", "refused", "answer"):
            out[key] += list(rows[key])
    return out


def truth(answers: dict, spec) -> dict:
    """Exact labels of each answer: verbosity (word count), refusal (the rule, stored), harmlessness."""
    from moslim.data.labelling import verbosity_level

    refused = np.asarray(answers["refused"], dtype=int)
    unsafe = np.asarray([s == "unsafe" for s in answers["safety"]], dtype=int)
    return {"verbosity": np.asarray([verbosity_level(a, spec) for a in answers["answer"]]),
            "refusal": refused, "harmlessness": 1 - unsafe * (1 - refused)}


def predictions(rm_path: str, questions: list[str], answers: list[str]) -> dict:
    """One reward model's argmax level per answer, for every figure it has."""
    from moslim.reward.scorer import RewardScorer

    rm = RewardScorer.from_pretrained(rm_path)
    with torch.no_grad():
        probs = rm.score(questions, answers, with_factors=rm.model.config.factor_set is not None)
    out = {"verbosity": probs[:, rm.objectives.index("verbosity")].argmax(-1).numpy(),
           "harmlessness": probs[:, rm.objectives.index("harmlessness"), :2].argmax(-1).numpy()}
    if rm.model.config.factor_set is not None:
        answer_factor = len(rm.objectives) + 1
        out["refusal"] = probs[:, answer_factor, :2].argmax(-1).numpy()
    return out


def figures(guess: np.ndarray, label: np.ndarray, levels: int) -> dict:
    from moslim.reward.evaluate import confusion_matrix, macro_f1

    confusion = confusion_matrix(torch.as_tensor(guess), torch.as_tensor(label), levels)
    out = {"accuracy": float(np.mean(guess == label)), "macro_f1": macro_f1(confusion), "n": int(label.size)}
    if levels > 2:
        out["within_one_level"] = float(np.mean(np.abs(guess - label) <= 1))
        out["by_true_level"] = {str(lv): (float(np.mean(guess[label == lv] == lv)) if (label == lv).any() else None)
                                for lv in range(levels)}
    return out


def compare(rm_paths: list[str], answers: dict, spec, verbosity_levels: int, num_resamples: int = 1000) -> dict:
    """Each model's figures on the answers, and each later model's accuracy change against the first."""
    from moslim.data.schema import prompt_text
    from moslim.policy.data import read_prompt_records

    prompts = {r.id: prompt_text(r.prompt) for r in read_prompt_records("moslim:assets/demo/prompts_train.jsonl")}
    missing = sorted({p for p in answers["prompt"] if p not in prompts})
    if missing:
        raise ValueError(f"{len(missing)} answered prompts are not in the demo's training prompts, e.g. {missing[0]}")
    questions = [prompts[p] for p in answers["prompt"]]
    labels = truth(answers, spec)
    guesses = {path: predictions(path, questions, answers["answer"]) for path in rm_paths}
    levels = {"verbosity": verbosity_levels, "refusal": 2, "harmlessness": 2}
    out = {"n_answers": len(questions), "arms": sorted(set(answers["arm"])), "models": {}}
    for path, guess in guesses.items():
        out["models"][path] = {name: figures(g, labels[name], levels[name]) for name, g in guess.items()}
    first = rm_paths[0]
    for path in rm_paths[1:]:
        changes = {}
        for name in guesses[path]:
            if name not in guesses[first]:
                continue
            right_new = guesses[path][name] == labels[name]
            right_old = guesses[first][name] == labels[name]

            def change(rows, new=right_new, old=right_old) -> float:
                return float(new[rows].mean() - old[rows].mean())

            rows = np.arange(len(questions))
            changes[name] = {"value": change(rows),
                             "ci": list(bootstrap_ci(answers["prompt"], change, num_resamples))}
        out["models"][path]["accuracy_change_vs_first"] = changes
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rm", nargs="+", required=True, help="reward models; the first is the one compared with")
    parser.add_argument("--arms", nargs="+", type=Path, required=True, help="study arm results (<out>/<arm>.json)")
    parser.add_argument("--exclude", nargs="*", type=Path, default=[],
                        help="arms to leave out (their policies wrote a compared model's training data)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    from moslim.data.demo import DEMO_DIR
    from moslim.data.labelling import load_labelling
    from moslim.reward.data import read_objectives

    objectives, _ = read_objectives("moslim:assets/demo/objectives.yaml")
    spec = load_labelling(DEMO_DIR / "objectives.yaml", objectives)
    excluded = {p.resolve() for p in args.exclude}
    arms = [p for p in args.arms if p.resolve() not in excluded]
    if not arms:
        parser.error("every arm is excluded")
    result = compare(args.rm, read_answers(arms), spec, objectives["verbosity"].num_levels, args.resamples)
    print(f"{result['n_answers']} answers of {len(arms)} arms ({len(args.arms) - len(arms)} excluded)")
    for path, model in result["models"].items():
        parts = []
        for name in ("verbosity", "refusal", "harmlessness"):
            if name in model:
                f = model[name]
                text = f"{name} {f['accuracy']:.3f} / F1 {f['macro_f1']:.3f}"
                if "by_true_level" in f:
                    text += (" (by level " + " / ".join("-" if v is None else f"{v:.2f}"
                                                        for v in f["by_true_level"].values())
                             + f"; within one level {f['within_one_level']:.3f})")
                change = model.get("accuracy_change_vs_first", {}).get(name)
                if change:
                    text += f" [{change['value']:+.3f} ({change['ci'][0]:+.3f}, {change['ci'][1]:+.3f})]"
                parts.append(text)
        print(f"{path}: " + "; ".join(parts))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
