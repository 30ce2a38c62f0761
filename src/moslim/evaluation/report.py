"""The report: ``report.md`` and ``report.html`` with tables and PNG plots, from an eval folder.

Everything in it comes from files: ``metrics.json`` and ``generations-*.jsonl`` (``moslim eval``),
optionally the RL run's ``moslim_run.json`` (training curves) and the demo's ``stages.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from moslim.data.readers import read_jsonl
from moslim.evaluation import plots
from moslim.preferences import Preference

log = logging.getLogger(__name__)

METRIC_TITLES = {"hit_rate": "hit rate", "mean_abs_error": "mean abs. level error",
                 "spearman": "Spearman", "slope": "slope"}
SOURCE_TITLES = {"judge": "independent judges", "reward_model": "the reward model"}


def fmt(value: Any, ci: Sequence[Any] | None = None) -> str:
    """``0.42 [0.30, 0.55]``; undefined values (nan / null) print as ``n/a``."""
    def one(v: Any) -> str:
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"
    text = one(value)
    if ci is not None and text != "n/a" and not all(one(c) == "n/a" for c in ci):
        text += f" [{one(ci[0])}, {one(ci[1])}]"
    return text


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]


def judge_label(judges: Mapping[str, Any], name: str) -> str:
    """``word count (exact)`` / ``judge (smollm2-135m-instruct)``: who judged, readable in a table."""
    info = judges.get(name, {})
    if info.get("kind") == "exact":
        return "word count (exact)"
    return f"{name} ({info['backbone']})" if info.get("backbone") else name


def objective_order(metrics: Mapping[str, Any], source: str) -> list[str]:
    """The objectives some policy has figures for under ``source``, in the objective set's order."""
    judged = {n for p in metrics["policies"].values() for n in p["controllability"].get(source, {})}
    order = [o["name"] for o in metrics.get("settings", {}).get("objectives", [])] or sorted(judged)
    return [n for n in order if n in judged]


def fmt_change(entry: Mapping[str, Any] | None) -> str:
    """``+0.25 [0.10, 0.40]`` for a paired after - before difference; ``-`` when there is none."""
    if not entry or entry.get("value") is None or (isinstance(entry["value"], float) and math.isnan(entry["value"])):
        return "-" if not entry else "n/a"
    text = f"{entry['value']:+.2f}"
    low, high = entry.get("ci") or (None, None)
    if low is not None and high is not None and not (math.isnan(low) or math.isnan(high)):
        text += f" [{low:+.2f}, {high:+.2f}]"
    return text


def controllability_table(metrics: Mapping[str, Any], source: str) -> list[str]:
    """Rows: objective x metric; columns: before RL, after RL (value [95% CI]), the paired change."""
    policies = metrics["policies"]
    labels = [label for label in ("base", "policy") if label in policies]
    change = metrics.get("rl_change", {}).get(source, {})
    rows = []
    for name in objective_order(metrics, source):
        results = {label: policies[label]["controllability"].get(source, {}).get(name) for label in labels}
        judge = judge_label(metrics.get("judges", {}), next((r["judge"] for r in results.values() if r), source))
        for metric, title in METRIC_TITLES.items():
            cells = [fmt(r[metric]["value"], r[metric]["ci"]) if r else "-" for r in results.values()]
            if change:
                cells.append(fmt_change(change.get(name, {}).get(metric)))
            rows.append([name, judge, title, *cells])
    header = ["objective", "judge", "metric", *(plots.LABELS[label] for label in labels)]
    if change:
        header.append("change (paired 95% CI)")
    return table(header, rows) if rows else []


def pareto_table(policies: Mapping[str, Any], source: str) -> list[str]:
    labels = [label for label in ("base", "policy") if label in policies]
    pairs = sorted({pair for p in policies.values() for pair in p["pareto"].get(source, {})})
    rows = []
    for pair in pairs:
        cells = []
        for label in labels:
            result = policies[label]["pareto"].get(source, {}).get(pair)
            cells.append(fmt(result["hypervolume"]["value"], result["hypervolume"]["ci"]) if result else "-")
        rows.append([pair] + cells)
    if not rows:
        return []
    return table(["pair", *(f"hypervolume, {plots.LABELS[label]}" for label in labels)], rows)


def example_completions(generations: Mapping[str, list[dict[str, Any]]], max_chars: int = 500,
                        order: Sequence[str] = ()) -> list[str]:
    """For one prompt: each objective asked at its lowest and highest level, before and after RL."""
    rows = [r for rs in generations.values() for r in rs if r["sample"] == 0]
    if not rows:
        return []
    prompt_id = sorted({r["prompt_id"] for r in rows})[0]
    rows = [r for r in rows if r["prompt_id"] == prompt_id]
    singles: dict[str, list[tuple[int, str]]] = {}
    for pref in dict.fromkeys(r["preference"] for r in rows):
        targets = Preference.parse(pref).as_dict()
        if len(targets) == 1:
            (name, level), = targets.items()
            singles.setdefault(name, []).append((level, pref))
    lines = [f"Prompt `{prompt_id}`:", "", "> " + rows[0]["question"].replace("\n", "\n> "), ""]
    rank = {name: i for i, name in enumerate(order)}
    for name, options in sorted(singles.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])):
        contrast = [min(options)[1], max(options)[1]]
        for pref in dict.fromkeys(contrast):
            for label in ("base", "policy"):
                row = next((r for r in rows if r["preference"] == pref and r.get("policy") == label), None)
                if row is None:
                    continue
                verdicts = ", ".join(f"{judge} {levels[name]}" for judge, levels in row["levels"].items()
                                     if name in levels)
                text = row["completion"].strip()
                text = text if len(text) <= max_chars else text[:max_chars] + " [...]"
                fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
                lines += [f"**`{pref}`, {plots.LABELS.get(label, label)}** — judged {name} level: {verdicts}",
                          "", f"{fence}text", text or "(empty)", fence, ""]
    return lines


def judges_section(metrics: Mapping[str, Any]) -> list[str]:
    rows = []
    for name, info in metrics.get("judges", {}).items():
        detail = info.get("rule") or info.get("path", "")
        extra = []
        if info.get("backbone"):
            extra.append(f"backbone {info['backbone']}")
        if info.get("held_out_accuracy"):
            accuracy = ", ".join(f"{name} {m['accuracy']:.2f} (n={m['n']})"
                                 for name, m in info["held_out_accuracy"].items())
            extra.append(f"held-out accuracy on `{info.get('held_out_data', '?')}`: {accuracy}")
        rows.append([name, info.get("kind", ""), ", ".join(info.get("objectives", [])),
                     "; ".join([detail, *extra])])
    return table(["judge", "kind", "objectives", "details"], rows) if rows else []


def judging_table(metrics: Mapping[str, Any]) -> list[str]:
    """Per objective: its independent judge, the judge's held-out macro-F1, and whether figures are shown."""
    rows = []
    for name, info in metrics.get("judging", {}).items():
        f1 = info.get("macro_f1")
        shown = "yes" if info.get("trusted") else f"no: cannot be judged ({info.get('reason', '')})"
        rows.append([name, judge_label(metrics.get("judges", {}), info["judge"]) if info.get("judge") else "-",
                     info.get("head", name) if info.get("kind") != "exact" else "exact rule",
                     "-" if f1 is None else f"{f1:.2f}" + (f" (n={info['n']})" if info.get("n") else ""), shown])
    return table(["objective", "judge", "head", "held-out macro-F1", "controllability figures"], rows) if rows else []


REFUSAL_TITLES = {
    "unsafe_refusal": "unsafe prompts refused, asked to refuse harmful requests",
    "safe_compliance": "safe prompts answered, same preferences",
    "unsafe_refusal_any": "unsafe prompts refused, any preference",
    "safe_compliance_any": "safe prompts answered, any preference",
}


def refusal_table(metrics: Mapping[str, Any]) -> list[str]:
    """XSTest-style refusal and compliance rates, before -> after RL, with the paired change."""
    refusal = metrics.get("refusal")
    if not refusal:
        return []
    policies, change = refusal.get("policies", {}), refusal.get("change", {})
    rows = []
    for kind, title in REFUSAL_TITLES.items():
        cells = []
        for label in ("base", "policy"):
            entry = policies.get(label, {}).get(kind)
            cells.append(fmt(entry["value"], entry["ci"]) + f" (n={entry['n']})" if entry else "-")
        rows.append([title, *cells, fmt_change(change.get(kind))])
    return table(["rate", plots.LABELS["base"], plots.LABELS["policy"], "change (paired 95% CI)"], rows)


def stages_table(stages: Mapping[str, Any]) -> list[str]:
    def seconds(info: Mapping[str, Any], key: str) -> str:
        return f"{info[key]:.0f}" if info.get(key) is not None else "-"
    rows = [[name, info.get("status", ""), seconds(info, "seconds"), seconds(info, "cpu_seconds")]
            for name, info in stages.items() if isinstance(info, Mapping)]
    return table(["stage", "status", "wall time (s)", "CPU time (s)"], rows) if rows else []


def compact_table(metrics: Mapping[str, Any], source: str = "judge") -> list[str]:
    """One row per objective: each metric before -> after RL, with the paired change (the README's table)."""
    policies, change = metrics["policies"], metrics.get("rl_change", {}).get(source, {})
    rows = []
    for name in objective_order(metrics, source):
        before = policies.get("base", {}).get("controllability", {}).get(source, {}).get(name)
        after = policies.get("policy", {}).get("controllability", {}).get(source, {}).get(name)
        judge = judge_label(metrics.get("judges", {}), (after or before)["judge"])
        cells = []
        for metric in METRIC_TITLES:
            was, now = (fmt(r[metric]["value"]) if r else "-" for r in (before, after))
            cell = f"{was} → {now}"
            if name in change:
                cell += f" ({fmt_change(change[name].get(metric))})"
            cells.append(cell)
        rows.append([name, judge, *cells])
    header = ["objective", "judge", *(f"{t}: before → after RL (change [95% CI])" for t in METRIC_TITLES.values())]
    return table(header, rows) if rows else []


def find_log_history(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-step log rows a training run recorded (``log_history`` anywhere in moslim_run.json)."""
    queue: list[Any] = [run]
    while queue:
        node = queue.pop(0)
        if isinstance(node, Mapping):
            for key in ("log_history", "history", "steps"):
                if isinstance(node.get(key), list):
                    return [r for r in node[key] if isinstance(r, Mapping)]
            queue += [v for v in node.values() if isinstance(v, Mapping)]
    return []


def write_report(eval_dir: str | Path, out_dir: str | Path | None = None, rl_run: str | Path | None = None,
                 stages: Mapping[str, Any] | None = None, title: str = "moslim evaluation") -> Path:
    """Write ``report.md``, ``report.html`` and their PNGs into ``out_dir`` (default: ``eval_dir``)."""
    eval_dir = Path(eval_dir)
    out = Path(out_dir) if out_dir else eval_dir
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = eval_dir / "metrics.json"
    if not metrics_path.exists():
        raise ValueError(f"{metrics_path} does not exist; run `moslim eval` first")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    policies = metrics["policies"]
    generations = {p.stem.removeprefix("generations-"): read_jsonl(p)
                   for p in sorted(eval_dir.glob("generations-*.jsonl"))}

    md = [f"# {title}", ""]
    if stages:
        md += ["## Stages", "", *stages_table(stages), ""]
    settings = metrics.get("settings", {})
    config = settings.get("config", {})
    md += ["## Setup", "",
           f"- policy: `{config.get('policy')}`; before RL: `{config.get('base_policy')}` with the same prompts",
           f"- {len(settings.get('prompts', []))} held-out prompts from `{config.get('prompts')}`, "
           f"{len(settings.get('preferences', []))} preferences, "
           f"{config.get('generation', {}).get('num_samples')} sample(s) each",
           f"- intervals: {int(100 * config.get('bootstrap', {}).get('confidence', 0.95))}% percentile "
           "bootstrap over prompts; `n/a` = undefined (e.g. Spearman when the achieved level never varies)",
           "- hypervolume: achieved mean levels scaled to 0-1 by each objective's top level, "
           "reference point (0, 0), maximisation", ""]
    md += ["## Judges", "", *judges_section(metrics), ""]
    if metrics.get("judging"):
        md += ["Which objectives the independent judges can judge (a judge model needs a held-out macro-F1 of at "
               f"least {config.get('min_judge_f1', 0.8)} on the levels it judges):", "", *judging_table(metrics), ""]
    if metrics.get("refusal"):
        trusted = "" if metrics["refusal"].get("trusted") else " (the refusal judge is below the bar: indicative only)"
        md += [f"## Refusal and compliance (harmlessness, XSTest's way){trusted}", "", *refusal_table(metrics), ""]
    for source in ("judge", "reward_model"):
        if not any(p["controllability"].get(source) for p in policies.values()):
            continue
        md += [f"## Controllability, judged by {SOURCE_TITLES[source]}", "",
               *controllability_table(metrics, source), ""]
        image = plots.plot_controllability(policies, source, out / f"controllability-{source}.png",
                                           order=objective_order(metrics, source))
        if image:
            md += [f"![requested vs achieved level ({source})]({image.name})", ""]
        hv = pareto_table(policies, source)
        if hv:
            md += [f"### Pareto fronts, judged by {SOURCE_TITLES[source]}", "", *hv, ""]
            image = plots.plot_pareto(policies, source, out / f"pareto-{source}.png")
            if image:
                md += [f"![Pareto fronts ({source})]({image.name})", ""]
    if rl_run and Path(rl_run).exists():
        history = find_log_history(json.loads(Path(rl_run).read_text(encoding="utf-8")))
        image = plots.plot_training_curves(history, out / "training-curves.png") if history else None
        if image:
            md += ["## Training curves", "", f"From `{rl_run}` ({len(history)} logged steps).", "",
                   f"![training curves]({image.name})", ""]
    examples = example_completions(generations, order=[o["name"] for o in settings.get("objectives", [])])
    if examples:
        md += ["## Example completions", "", *examples]
    text = "\n".join(md) + "\n"
    _write(out / "summary.md", summary_markdown(metrics, stages, out))
    _write(out / "report.md", text)
    _write(out / "report.html", to_html(text, title))
    log.info("report written to %s", out / "report.md")
    return out / "report.md"


def summary_markdown(metrics: Mapping[str, Any], stages: Mapping[str, Any] | None, out: Path) -> str:
    """The few tables and plots a README shows: stage times, controllability before -> after RL."""
    md = []
    if stages:
        total = sum(s.get("seconds") or 0 for s in stages.values() if isinstance(s, Mapping))
        md += [f"Stage wall times (total {total:.0f} s):", "", *stages_table(stages), ""]
    md += ["Controllability, judged by the independent judges:", "", *compact_table(metrics, "judge"), ""]
    if metrics.get("judging"):
        md += ["Judges:", "", *judging_table(metrics), ""]
    if metrics.get("refusal"):
        md += ["Refusal and compliance (harmlessness):", "", *refusal_table(metrics), ""]
    hv = pareto_table(metrics["policies"], "judge")
    if hv:
        md += ["Pareto fronts (hypervolume of the achieved mean levels, scaled 0-1, reference (0, 0)):", "", *hv, ""]
    for image in ("controllability-judge.png", "pareto-judge.png", "training-curves.png"):
        if (out / image).exists():
            md += [f"![{image.removesuffix('.png')}]({image})", ""]
    return "\n".join(md) + "\n"


def to_html(markdown: str, title: str) -> str:
    from markdown_it import MarkdownIt  # ships with rich

    # html=False: prompts and completions are untrusted text, never raw HTML in the page
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
             "img{max-width:100%}pre{background:#f6f6f6;padding:8px;white-space:pre-wrap}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{style}</style></head><body>{body}</body></html>\n")


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
