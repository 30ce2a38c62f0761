"""``moslim compare RUN...``: every method's front, hypervolume, request-following and compute in one report.

Reads each run's ``baseline_run.json`` (written by ``moslim baseline``), checks the runs are comparable (same
objectives, grid and prompts), and writes ``compare.json``, ``compare.md``, ``compare.html`` and
``compare-fronts.png`` into the output folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moslim.baselines.recipes import RUN_FILE, write_json
from moslim.evaluation.pareto import hypervolume_2d, pareto_front
from moslim.evaluation.report import fmt, table, to_html

log = logging.getLogger(__name__)

TITLES = {"moslim": "MOSLIM", "prompt-only": "prompt-only", "morlhf": "MORLHF", "soups": "Rewarded Soups",
          "ric": "RiC"}


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Dominated hypervolume (maximisation) above ``reference``: the project's exact 2-D sweep for two objectives,
    pymoo's ``HV`` beyond (it minimises, so both are negated)."""
    pts = np.asarray(points, dtype=float)
    if pts.size == 0:
        return 0.0
    if pts.ndim != 2 or pts.shape[1] != len(reference):
        raise ValueError(f"points must be (n, {len(reference)}) to match the reference point, got {pts.shape}")
    if pts.shape[1] == 2:
        return hypervolume_2d(pts, reference)
    try:
        from pymoo.indicators.hv import HV
    except ImportError:
        raise ValueError("hypervolume beyond 2 objectives needs pymoo: pip install pymoo") from None
    above = pts[np.all(pts > np.asarray(reference), axis=1)]
    return float(HV(ref_point=-np.asarray(reference, dtype=float))(-above)) if len(above) else 0.0


def load_runs(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    runs = []
    for path in paths:
        file = Path(path) / RUN_FILE
        if not file.exists():
            raise ValueError(f"{path}: no {RUN_FILE}; run `moslim baseline METHOD --config ... out={path}` first "
                             "(a run writes it last, when every stage is done)")
        runs.append(json.loads(file.read_text(encoding="utf-8")))
    return runs


def check_comparable(runs: list[dict[str, Any]], paths: Sequence[str | Path]) -> None:
    """The runs were evaluated on the same objectives, grid and prompts, else a ValueError naming the odd one."""
    first = runs[0]
    for key in ("objectives", "grid_points", "prompts"):
        for run, path in zip(runs[1:], paths[1:]):
            if run[key] != first[key]:
                raise ValueError(f"{path}: its {key} ({str(run[key])[:80]}) differ from {paths[0]}'s "
                                 f"({str(first[key])[:80]}); evaluate every method with the same grid and eval "
                                 "sections")


def labels(runs: list[dict[str, Any]]) -> list[str]:
    """A column label per run: the method's title, with the budget when a method appears more than once."""
    methods = [r["method"] for r in runs]
    out = []
    for run in runs:
        title = TITLES.get(run["method"], run["method"])
        budget = run["compute"].get("budget")
        out.append(f"{title} ({budget})" if methods.count(run["method"]) > 1 and budget else title)
    if len(set(out)) != len(out):
        raise ValueError(f"two runs would share a label in {out}; compare runs of different methods or budgets")
    return out


def compare_runs(paths: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Write the comparison files into ``out``; return ``compare.json``'s content."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("compare: give at least one RUN folder")
    runs = load_runs(paths)
    check_comparable(runs, paths)
    reference = runs[0]["reference_point"]
    methods = {}
    for label, run, path in zip(labels(runs), runs, paths):
        xy = [p["achieved"] for p in run["points"] if None not in p["achieved"]]
        front = pareto_front(xy) if xy else []
        methods[label] = {"method": run["method"], "run": str(path), "hypervolume": hypervolume(xy, reference),
                          "points": [{"weights": p["weights"], "achieved": p["achieved"], "input": p.get("system", "")}
                                     for p in run["points"]],
                          "front": [xy[i] for i in front], "following": run["following"], "compute": run["compute"],
                          "judge_of": run["judge_of"]}
    result = {"objectives": runs[0]["objectives"], "reference_point": reference, "prompts": len(runs[0]["prompts"]),
              "grid_points": runs[0]["grid_points"], "methods": methods}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot = plot_fronts(methods, result["objectives"], out / "compare-fronts.png", reference)
    markdown = compare_markdown(result, plot.name if plot else None)
    write_json(out / "compare.json", result)
    (out / "compare.md").write_text(markdown, encoding="utf-8")
    (out / "compare.html").write_text(to_html(markdown, "moslim compare"), encoding="utf-8")
    return result


def plot_fronts(methods: dict[str, Any], names: list[str], path: Path, reference: Sequence[float]) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from moslim.evaluation.plots import _staircase

    markers, styles = "os^Dv<>", ["-", "--", "-.", ":"]
    fig, ax = plt.subplots(figsize=(6, 5))
    for i, (label, entry) in enumerate(methods.items()):
        color, marker = f"C{i}", markers[i % len(markers)]
        pts = [p["achieved"] for p in entry["points"] if None not in p["achieved"]]
        if not pts:
            continue
        ax.scatter([x for x, _ in pts], [y for _, y in pts], color=color, marker=marker, alpha=0.45, s=22)
        # The dominated region's boundary, closed down to the reference point's axes so that a one-point front
        # shows as its rectangle.
        front = sorted(map(tuple, entry["front"]))
        xs, ys = _staircase(front)
        xs, ys = [reference[0], *xs, front[-1][0]], [front[0][1], *ys, reference[1]]
        ax.plot(xs, ys, color=color, linestyle=styles[i % len(styles)],
                label=f"{label} (HV {entry['hypervolume']:.3f})")
    ax.set(xlabel=f"{names[0]} (achieved / top level)", ylabel=f"{names[1]} (achieved / top level)",
           xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), title="Pareto fronts on the 11-point preference grid")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, int | float) else str(value)


def compare_markdown(result: dict[str, Any], plot: str | None) -> str:
    names, methods = result["objectives"], result["methods"]
    ref = tuple(result["reference_point"])
    md = ["# MOSLIM and the baselines", "",
          f"Objectives: **{names[0]}** and **{names[1]}** (the two the demo's independent judges measure). "
          f"{result['grid_points']} preference points w = (t, 1 - t), {result['prompts']} held-out prompts each. "
          f"Achieved value = mean judged level / top level; hypervolume of each method's achieved points, "
          f"reference point {ref}.", "", judged_by(methods), ""]
    rows = []
    for label, m in methods.items():
        c = m["compute"]
        rows.append([label, c.get("budget") or "-", f"{m['hypervolume']:.3f}", _num(c.get("training_runs")),
                     _num(c.get("rl_steps")), _num(c.get("sft_steps")), _num(c.get("cpu_seconds")),
                     _num(c.get("wall_seconds")), _num(c.get("peak_rss_mib")),
                     f"{_num(c.get('model_copies'))} ({_num(c.get('disk_mib'))} MiB)",
                     c.get("serve_new_preference", "") + (f" ({c['serve_new_preference_s']} s)"
                                                           if c.get("serve_new_preference_s") is not None else "")])
    md += ["## Fronts and compute", ""]
    md += table(["method", "budget", "hypervolume", "training runs", "RL steps", "SFT steps", "CPU s (training)",
                 "wall s (training)", "peak RSS MiB", "model copies (disk)", "serving an untrained preference"], rows)
    md += ["", verdict(methods), ""]
    if plot:
        md += [f"![every method's front]({plot})", ""]
    md += ["## Following the request", "",
           "Each grid point's target levels (the MOSLIM rule: level = round(w x top level)) against the judged "
           "levels of the answers at that point; 95% bootstrap over prompts.", ""]
    header = ["method"] + [f"{n} {k}" for n in names for k in ("Spearman", "hit rate")]
    rows = []
    for label, m in methods.items():
        row = [label]
        for n in names:
            f = m["following"].get(n, {})
            row += [fmt(f.get("spearman", {}).get("value"), f.get("spearman", {}).get("ci")),
                    fmt(f.get("hit_rate", {}).get("value"), f.get("hit_rate", {}).get("ci"))]
        rows.append(row)
    md += table(header, rows)
    md += ["", "## Achieved points", ""]
    header = ["w = (t, 1 - t), t"] + list(methods)
    by_t: dict[float, dict[str, str]] = {}
    for label, m in methods.items():
        for p in m["points"]:
            cell = "-" if None in p["achieved"] else f"({p['achieved'][0]:.2f}, {p['achieved'][1]:.2f})"
            by_t.setdefault(round(p["weights"][0], 3), {})[label] = cell
    md += table(header, [[f"{t:.1f}", *(by_t[t].get(label, "-") for label in methods)] for t in sorted(by_t)])
    md += ["", "Methods that train a policy per point (MORLHF) have figures only at the points they trained."]
    return "\n".join(md) + "\n"


def judged_by(methods: dict[str, Any]) -> str:
    """Which judge gave each objective's levels (an untrusted judge model is replaced by the reward model)."""
    seen = {json.dumps(m["judge_of"], sort_keys=True) for m in methods.values()}
    first = next(iter(methods.values()))["judge_of"]
    text = "Judged by: " + ", ".join(f"{n}: {j}" for n, j in first.items())
    if "reward_model" in first.values():
        text += " (the reward model stands in where no independent judge reaches the macro-F1 bar: biased)"
    return text + ("." if len(seen) == 1 else "; other runs used other judges (see compare.json).")


def verdict(methods: dict[str, Any]) -> str:
    """MOSLIM's hypervolume against each other method's, in words."""
    if "MOSLIM" not in methods:
        return "MOSLIM is not among the compared runs."
    own = methods["MOSLIM"]["hypervolume"]
    parts = []
    for label, m in methods.items():
        if label == "MOSLIM":
            continue
        diff = own - m["hypervolume"]
        parts.append(f"{label} {m['hypervolume']:.3f} ({'+' if diff >= 0 else ''}{diff:.3f} for MOSLIM)")
    return f"MOSLIM's hypervolume {own:.3f} against: " + "; ".join(parts) + "."
