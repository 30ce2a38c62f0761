"""Evaluate one method on the preference grid: the same held-out prompts and judges as ``moslim eval``.

Every grid point gets every selected prompt; what differs between methods is only the policy and its input
(see :mod:`moslim.baselines.grid`). Completions of a point are judged and saved as ``eval/point-NN.jsonl``
(reused when present, so a killed evaluation resumes at the next point); ``points.json`` is written last.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from moslim.baselines.config import BaselineConfig
from moslim.baselines.grid import levels_for
from moslim.data.readers import read_jsonl, write_jsonl
from moslim.data.schema import prompt_text
from moslim.evaluation.runner import REWARD_MODEL, build_judges, judge_quality, judge_rows, select_prompts
from moslim.objectives import ObjectiveSet
from moslim.paths import resolve_path
from moslim.preferences import Preference, PromptTemplate

log = logging.getLogger(__name__)


class FixedSystem:
    """A stand-in prompt template whose system message is fixed text (a baseline's own input, not levels)."""

    def __init__(self, text: str):
        self.text = text

    def render(self, preference: Preference, objectives: ObjectiveSet) -> str:
        return self.text

    system_message = render

    def user_suffix(self, preference: Preference, objectives: ObjectiveSet) -> str:
        return ""


def saved_template(folder: str | Path | None, override: str | None = None) -> PromptTemplate:
    """The template a policy was trained with (saved next to it), ``override`` if given, else the default."""
    from moslim.policy.data import load_template

    if override:
        return load_template(resolve_path(override))
    saved = Path(folder) / "prompt_template.yaml" if folder else None
    return load_template(saved if saved is not None and saved.exists() else None)


def judges_for(cfg: BaselineConfig):
    """(objectives, judges, judge_of): the reward model's objectives, ``moslim eval``'s judges, and per compared
    objective the judge whose levels count (a trusted independent judge, else the reward model)."""
    from moslim.evaluation.runner import EvalConfig

    ev = cfg.eval
    eval_cfg = EvalConfig(reward_model=cfg.reward_model, judge=ev.judge, objectives=ev.objectives,
                          generation=ev.generation)
    objectives, judges = build_judges(eval_cfg)
    for name in cfg.grid.objectives:
        if name not in objectives:
            raise ValueError(f"grid.objectives: {name!r} is not an objective of the reward model "
                             f"{cfg.reward_model} ({', '.join(objectives.names)})")
    quality = judge_quality(objectives, [j for j in judges if j.name != REWARD_MODEL], ev.min_judge_f1)
    judge_of = {n: quality[n]["judge"] if quality[n]["trusted"] else REWARD_MODEL for n in cfg.grid.objectives}
    return objectives, judges, judge_of, quality


def point_input(method: str, point: dict[str, Any], cfg: BaselineConfig,
                objectives: ObjectiveSet) -> tuple[Preference, Any, str]:
    """(the MOSLIM preference of the point, the template to render the system message with, a description)."""
    names = cfg.grid.objectives
    preference = levels_for(point["weights"], names, objectives)
    if method in ("moslim", "prompt-only"):
        template = saved_template(point["policy"], cfg.template)
        return preference, template, template.render(preference, objectives)
    if method == "ric":
        from moslim.baselines.ric import ric_prompt

        text = ric_prompt(point["policy"], point["weights"])
        return Preference(), FixedSystem(text), text
    folder = point.get("policy") or point["soup"]["policies"][0]
    return Preference(), FixedSystem(saved_template(folder).empty), point["input"]


def evaluate_points(method: str, points: list[dict[str, Any]], cfg: BaselineConfig, out: Path,
                    progress: bool = True) -> dict[str, Any]:
    """Generate and judge every point; write ``points.json`` (the stage's marker) last; return stage extras."""
    from moslim.baselines.recipes import write_json
    from moslim.data.readers import read_prompts
    from moslim.models import check_reference

    for point in points:
        if point.get("policy"):
            check_reference(point["policy"], "policy")
    objectives, judges, judge_of, quality = judges_for(cfg)
    records = select_prompts(read_prompts(resolve_path(cfg.eval.prompts)), cfg.eval.num_prompts,
                             cfg.eval.prompt_seed)
    folder = out / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    loaded: dict[str, Any] = {}
    saved = []
    for point in points:
        path = folder / f"point-{point['index']:02d}.jsonl"
        preference, template, text = point_input(method, point, cfg, objectives)
        entry = dict(point)
        entry.update(preference=preference.to_string() if method in ("moslim", "prompt-only") else "",
                     targets=levels_for(point["weights"], cfg.grid.objectives, objectives).to_string(),
                     system=text, rows=path.name)
        if not path.exists():
            start = time.perf_counter()
            model, tokenizer, interp_s = policy_for(point, loaded, folder)
            rows = generate_point(model, tokenizer, records, preference, template, objectives, cfg, progress)
            for row in rows:
                row.update(point=point["index"], weights=point["weights"], targets=entry["targets"])
            judge_rows(rows, judges)
            write_jsonl(path, rows)
            log.info("point %d (%s): %d completions in %.0f s", point["index"], point["input"], len(rows),
                     time.perf_counter() - start)
            if interp_s is not None:
                entry["interpolation_s"] = round(interp_s, 2)
        saved.append(entry)
    write_json(out / "points.json", {
        "method": method, "objectives": cfg.grid.objectives, "judge_of": judge_of, "judging": quality,
        "judges": {j.name: j.describe() for j in judges}, "prompts": [r.id for r in records],
        "num_levels": {n: objectives[n].num_levels for n in cfg.grid.objectives}, "points": saved})
    return {"kind": "eval", "completions": sum(len(read_jsonl(folder / p["rows"])) for p in saved)}


def policy_for(point: dict[str, Any], loaded: dict[str, Any], folder: Path):
    """(model, tokenizer, interpolation seconds or None): the point's policy, loaded once per folder; a soup is
    interpolated into a temporary folder, loaded and the folder removed (its cost is the serving cost)."""
    from moslim.policy.generate import load_policy

    if "soup" in point:
        from moslim.baselines.soups import interpolate

        start = time.perf_counter()
        tmp = folder / f".soup-{point['index']:02d}"
        interpolate(point["soup"]["policies"], point["soup"]["lambdas"], tmp)
        seconds = time.perf_counter() - start
        try:
            model, tokenizer, _ = load_policy(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return model, tokenizer, seconds
    key = str(point["policy"])
    if key not in loaded:
        loaded.clear()  # one policy in memory at a time
        loaded[key] = load_policy(key)[:2]
    return (*loaded[key], None)


def generate_point(model, tokenizer, records, preference: Preference, template, objectives: ObjectiveSet,
                   cfg: BaselineConfig, progress: bool) -> list[dict[str, Any]]:
    from moslim.policy.generate import generate_completions

    gen = cfg.eval.generation
    questions = [prompt_text(r.prompt) for r in records]
    outputs = generate_completions(model, questions, preference, objectives=objectives, template=template,
                                   max_new_tokens=gen.max_new_tokens, temperature=gen.temperature, top_p=gen.top_p,
                                   num_samples=gen.num_samples, seed=gen.seed, batch_size=gen.batch_size,
                                   tokenizer=tokenizer, progress=progress)
    return [{"prompt_id": r.id, "question": q, "tags": r.tags, "sample": s, "completion": text, "levels": {}}
            for r, q, samples in zip(records, questions, outputs) for s, text in enumerate(samples)]
