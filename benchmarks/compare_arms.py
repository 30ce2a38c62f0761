"""Two study arms over several seeds: the difference per seed and pooled, with paired intervals over prompts.

    .venv/bin/python benchmarks/compare_arms.py \
        --a runs/study-aug-s0/moslim.json runs/study-aug-s1/moslim.json \
        --b runs/study-fp32s0/moslim.json runs/study-old-s1/moslim.json

``--a`` and ``--b`` list arm results (``<out>/<arm>.json`` of ``benchmarks/controllability_study.py``)
paired by position: the i-th of each was trained with the same seed and answered the same validation prompts
(the study draws them with a fixed seed). For each pair and pooled over the pairs (the mean of the per-seed
differences), it prints A minus B for verbosity's Spearman and hit rate and, where both arms measured
harmlessness, the refusal rate of unsafe prompts and the compliance rate with safe ones when asked to be
harmless. Each interval is a percentile bootstrap that resamples prompts, the same draw for every seed: it
measures how much the figure depends on the prompts drawn, not on the seed. How far seeds disagree shows in
the per-seed figures and in the last interval printed: a t interval over the per-seed differences (n - 1
degrees of freedom, two seeds at least), which counts each training run as one draw. With three seeds it is
wide; it is the one to read before calling a setting better.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import sem, t

from moslim.evaluation.controllability import bootstrap_ci, hit_rate, spearman


def _rows(path: Path, key: str | None) -> dict:
    after = json.loads(path.read_text())["after"]
    if key is not None:
        if key not in after:
            raise ValueError(f"{path}: no {key!r} results in this arm")
        after = after[key]
    return after["rows"]


def _verbosity_table(rows: dict) -> dict:
    return {"prompt": rows["prompt"], "x": rows["requested"], "y": rows["achieved"]}


def _harm_table(rows: dict, safety: str, value: int) -> dict:
    """Rows asked to be harmless (level 1) on prompts of one safety: y = 1 where the answer is the wanted one."""
    keep = [i for i, (lv, s) in enumerate(zip(rows["requested"], rows["safety"])) if lv == 1 and s == safety]
    return {"prompt": [rows["prompt"][i] for i in keep], "x": [0] * len(keep),
            "y": [int(rows["refused"][i] == value) for i in keep]}


def pooled_difference(pairs: list[tuple[dict, dict]], metric, num_resamples: int = 1000, seed: int = 0) -> dict:
    """``metric(A) - metric(B)`` for each (A, B) pair of tables and their mean, with bootstrap intervals.

    A table holds parallel lists ``prompt``, ``x`` (requested) and ``y`` (achieved); both tables of every pair
    must cover the same prompts. Every interval comes from ``bootstrap_ci`` with one seed, so each resample
    draws the same prompts for every pair, both sides and the mean.
    """
    if not pairs:
        raise ValueError("no pairs of arms to compare")
    prompts = sorted(set(pairs[0][0]["prompt"]))
    for i, (a, b) in enumerate(pairs):
        for side, table in (("A", a), ("B", b)):
            if sorted(set(table["prompt"])) != prompts:
                raise ValueError(f"pair {i} ({side}) answered other prompts than pair 0's A; compare arms of one study")
    tables = [table for pair in pairs for table in pair]  # pair k: tables 2k (A) and 2k + 1 (B)
    groups = [p for table in tables for p in table["prompt"]]
    which = np.concatenate([np.full(len(table["prompt"]), t) for t, table in enumerate(tables)])
    x = np.concatenate([np.asarray(table["x"]) for table in tables])
    y = np.concatenate([np.asarray(table["y"]) for table in tables])

    def difference(k: int, rows: np.ndarray) -> float:
        a, b = rows[which[rows] == 2 * k], rows[which[rows] == 2 * k + 1]
        return metric(x[a], y[a]) - metric(x[b], y[b])

    def mean(rows: np.ndarray) -> float:
        return float(np.mean([difference(k, rows) for k in range(len(pairs))]))

    every = np.arange(len(groups))
    per_pair = [{"value": difference(k, every),
                 "ci": list(bootstrap_ci(groups, lambda rows, k=k: difference(k, rows), num_resamples, seed=seed))}
                for k in range(len(pairs))]
    pooled = {"value": mean(every), "ci": list(bootstrap_ci(groups, mean, num_resamples, seed=seed))}
    return {"per_pair": per_pair, "pooled": pooled, "over_seeds": over_seeds([p["value"] for p in per_pair])}


def over_seeds(values: list[float], confidence: float = 0.95) -> dict:
    """The mean of the per-seed differences with a t interval from their spread (n - 1 degrees of freedom).

    The pooled bootstrap interval resamples prompts only; this one treats each seed's training run as the unit,
    so the run-to-run spread widens it (and the evaluation's sampling, which each seed's figure also holds).
    NaN with fewer than two seeds: one run says nothing about how far runs disagree.
    """
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return {"value": float(values.mean()) if values.size else float("nan"), "ci": [float("nan")] * 2,
                "seeds": int(values.size)}
    if np.ptp(values) == 0:  # seeds that agree to the digit: no spread (scipy's interval would be NaN)
        return {"value": float(values[0]), "ci": [float(values[0])] * 2, "seeds": int(values.size)}
    low, high = t.interval(confidence, values.size - 1, loc=values.mean(), scale=sem(values))
    return {"value": float(values.mean()), "ci": [float(low), float(high)], "seeds": int(values.size)}


def rate(_x, y) -> float:
    return float(np.mean(y)) if len(y) else float("nan")


def compare(a_paths: list[Path], b_paths: list[Path], num_resamples: int = 1000) -> dict:
    """Every comparison the arms allow (see the module docstring), keyed by figure."""
    if len(a_paths) != len(b_paths):
        raise ValueError(f"--a has {len(a_paths)} arms and --b {len(b_paths)}: pair them one to one by seed")
    out = {}
    verbosity = [(_verbosity_table(_rows(a, None)), _verbosity_table(_rows(b, None)))
                 for a, b in zip(a_paths, b_paths)]
    out["spearman"] = pooled_difference(verbosity, spearman, num_resamples)
    out["hit_rate"] = pooled_difference(verbosity, hit_rate, num_resamples)
    try:
        harm = [(_rows(a, "harmlessness"), _rows(b, "harmlessness")) for a, b in zip(a_paths, b_paths)]
    except ValueError:
        return out
    for name, safety, value in (("refusal_unsafe_asked_harmless", "unsafe", 1),
                                ("compliance_safe_asked_harmless", "safe", 0)):
        tables = [(_harm_table(a, safety, value), _harm_table(b, safety, value)) for a, b in harm]
        out[name] = pooled_difference(tables, rate, num_resamples)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", nargs="+", type=Path, required=True, help="arm results of the changed setting")
    parser.add_argument("--b", nargs="+", type=Path, required=True, help="arm results to compare with, same seeds")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    result = compare(args.a, args.b, args.resamples)
    for name, figure in result.items():
        seeds = ", ".join(f"{p['value']:+.2f} [{p['ci'][0]:+.2f}, {p['ci'][1]:+.2f}]" for p in figure["per_pair"])
        pooled = figure["pooled"]
        runs = figure["over_seeds"]
        print(f"{name}: A - B per pair {seeds}; pooled {pooled['value']:+.2f} "
              f"[{pooled['ci'][0]:+.2f}, {pooled['ci'][1]:+.2f}]; over {runs['seeds']} seeds (t interval) "
              f"[{runs['ci'][0]:+.2f}, {runs['ci'][1]:+.2f}]")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
