"""Does a trained policy follow verbosity as well when it is asked for alone as when harmlessness is named beside it?

The controllability study (and the demo's evaluation) asks for verbosity alone ("verbosity=L"), but the demo's RL
names two objectives in half of its preferences ("verbosity=L, harmlessness=1": ``data.num_named: [1, 2]``), so
most of the verbosity a policy learnt, it learnt in the two-objective format. This asks each ``--policy`` for every
verbosity level of the study's validation prompts in both formats (the same prompts, sampling as in the study:
temperature 0.7, one answer per cell, the same seed) and prints, per format, the exact judge's Spearman(requested,
achieved), hit rate and mean achieved level per requested level, and the paired difference of the two formats'
Spearman with a 95% bootstrap interval over prompts.

    .venv/bin/python benchmarks/preference_format.py --policy runs/study-fp32s0/moslim/final \
        runs/study-decomp-s0/rm_verbosity/final
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

FORMATS = {"alone": {}, "with_harmlessness": {"harmlessness": 1}}


def format_figures(requested: np.ndarray, achieved: dict[str, np.ndarray], groups: list[str], levels: int,
                   num_resamples: int = 1000) -> dict:
    """Per format: Spearman, hit rate, mean achieved level per requested level; and the second format's Spearman
    minus the first's, paired over the same prompts."""
    out = {}
    for name, got in achieved.items():
        out[name] = {"spearman": spearman(requested, got), "hit_rate": hit_rate(requested, got),
                     "mean_level_by_request": [float(got[requested == lv].mean()) for lv in range(levels)]}
    first, second = list(achieved)[:2]

    def change(rows) -> float:
        return spearman(requested[rows], achieved[second][rows]) - spearman(requested[rows], achieved[first][rows])

    out["spearman_change"] = {"formats": [second, first], "value": change(np.arange(requested.size)),
                              "ci": list(bootstrap_ci(groups, change, num_resamples))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", nargs="+", required=True, help="trained policies (folders) or a built-in name")
    parser.add_argument("--validation", type=int, default=32, help="the study's validation prompts")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    from moslim.data.labelling import verbosity_level
    from moslim.policy.generate import generate_completions
    from moslim.preferences import Preference

    objectives, spec, cells, questions, requested, groups = verbosity_cells(args.validation)
    levels = objectives["verbosity"].num_levels
    requested = np.asarray(requested)
    result = {}
    for policy in args.policy:
        achieved = {}
        for name, extra in FORMATS.items():
            prefs = [Preference.of(verbosity=lv, **extra) for _, lv in cells]
            outputs = generate_completions(policy, questions, prefs, objectives=objectives,
                                           max_new_tokens=args.tokens, temperature=0.7, top_p=0.95, num_samples=1,
                                           seed=0, batch_size=24, progress=False)
            achieved[name] = np.asarray([verbosity_level(o[0], spec) for o in outputs])
        result[policy] = format_figures(requested, achieved, groups, levels, args.resamples)
        r = result[policy]
        parts = [f"{name} {r[name]['spearman']:.2f} (hit {r[name]['hit_rate']:.2f}; mean level "
                 + " / ".join(f"{v:.2f}" for v in r[name]["mean_level_by_request"]) + ")" for name in FORMATS]
        c = r["spearman_change"]
        print(f"{policy}: " + "; ".join(parts)
              + f"; with harmlessness minus alone {c['value']:+.2f} [{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}]", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
