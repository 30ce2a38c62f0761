"""Where the preference is written: how well the base policy follows verbosity, asked through each prompt template.

Before any RL, the policy reads the requested level from its prompt. This asks the base policy (or ``--policy``)
for every verbosity level of the controllability study's validation prompts (never the demo's evaluation prompts)
through each template, ``--samples`` answers a cell at the study's sampling (temperature 0.7, top-p 0.95, seed 0),
and prints per template the exact judge's Spearman(requested, achieved), hit rate, mean achieved level and words
per requested level, and each template's Spearman minus the first's, paired over the same prompts with a 95%
bootstrap interval over prompts:

- ``system``: the default template (the levels as "- verbosity: level 1 of 0-3 (...)" in the system message);
- ``system_plain``: the level's description as a plain instruction in the system message;
- ``user``: the same instruction closing the user's turn (``configs/demo/prompt_user.yaml``).

    .venv/bin/python benchmarks/preference_placement.py --validation 96 --samples 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from controllability_study import verbosity_cells  # noqa: E402

from moslim.evaluation.controllability import bootstrap_ci, hit_rate, spearman  # noqa: E402
from moslim.policy.data import load_template  # noqa: E402
from moslim.preferences import PromptTemplate  # noqa: E402

TEMPLATES = {
    "system": PromptTemplate(),
    "system_plain": PromptTemplate(header="You are a helpful assistant.",
                                   line="Please {description}. ({name} level {level})"),
    "user": load_template(Path(__file__).resolve().parents[1] / "configs/demo/prompt_user.yaml"),
}


def template_figures(requested: np.ndarray, achieved: dict[str, np.ndarray], words: dict[str, np.ndarray],
                     groups: list[str], levels: int, num_resamples: int = 1000) -> dict:
    """Per template: Spearman, hit rate, mean level and words per requested level; each template's Spearman
    minus the first's, paired over prompts."""
    out = {}
    first = next(iter(achieved))
    for name, got in achieved.items():
        out[name] = {"spearman": spearman(requested, got), "hit_rate": hit_rate(requested, got),
                     "mean_level_by_request": [float(got[requested == lv].mean()) for lv in range(levels)],
                     "mean_words_by_request": [float(words[name][requested == lv].mean()) for lv in range(levels)]}
        if name != first:
            def change(rows, got=got) -> float:
                return spearman(requested[rows], got[rows]) - spearman(requested[rows], achieved[first][rows])

            out[name]["spearman_change"] = {"vs": first, "value": change(np.arange(requested.size)),
                                            "ci": list(bootstrap_ci(groups, change, num_resamples))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="smollm2-135m-instruct", help="a policy folder or a built-in name")
    parser.add_argument("--validation", type=int, default=96, help="the study's validation prompts")
    parser.add_argument("--samples", type=int, default=2, help="answers per prompt and level")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--templates", nargs="+", default=list(TEMPLATES), choices=list(TEMPLATES))
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    from moslim.data.labelling import verbosity_level
    from moslim.policy.generate import generate_completions
    from moslim.preferences import Preference

    objectives, spec, cells, questions, requested, groups = verbosity_cells(args.validation)
    levels = objectives["verbosity"].num_levels
    requested = np.repeat(requested, args.samples)  # each cell's answers one after another
    groups = [g for g in groups for _ in range(args.samples)]
    achieved, words = {}, {}
    for name in args.templates:
        outputs = generate_completions(args.policy, questions, [Preference.of(verbosity=lv) for _, lv in cells],
                                       objectives=objectives, template=TEMPLATES[name], max_new_tokens=args.tokens,
                                       temperature=0.7, top_p=0.95, num_samples=args.samples, seed=0, batch_size=32,
                                       progress=False)
        answers = [a for o in outputs for a in o]
        achieved[name] = np.asarray([verbosity_level(a, spec) for a in answers])
        words[name] = np.asarray([len(a.split()) for a in answers])
    result = template_figures(requested, achieved, words, groups, levels, args.resamples)
    for name, r in result.items():
        line = (f"{name}: Spearman {r['spearman']:.2f}, hit rate {r['hit_rate']:.2f}, mean level "
                + " / ".join(f"{v:.2f}" for v in r["mean_level_by_request"]) + ", words "
                + " / ".join(f"{v:.0f}" for v in r["mean_words_by_request"]))
        if "spearman_change" in r:
            c = r["spearman_change"]
            line += f"; minus {c['vs']}: {c['value']:+.2f} [{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}]"
        print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, **result}, indent=1))


if __name__ == "__main__":
    main()
