import json

import pytest

from moslim.config import load_config
from moslim.data.labelling import word_count
from moslim.data.schema import PromptRecord
from moslim.evaluation.runner import EvalConfig, GridConfig, build_grid, run_evaluation, select_prompts
from moslim.preferences import Preference


def tiny_eval_config(tmp_path, policy, reward_model, prompts, judge=None, **extra) -> EvalConfig:
    overrides = [f"policy={policy}", f"base_policy={policy}", f"reward_model={reward_model}",
                 f"prompts={prompts}", f"out={tmp_path / 'eval'}", "num_prompts=3",
                 "generation.max_new_tokens=12", "generation.num_samples=2", "generation.batch_size=8",
                 "bootstrap.num_resamples=50", "grid.objective_pairs=[[helpfulness, verbosity]]",
                 "grid.pair_levels={helpfulness: [0, 2], verbosity: [0, 3]}"]
    if judge:
        overrides.append(f"judge={judge}")
    return load_config(EvalConfig, None, overrides + [f"{k}={v}" for k, v in extra.items()])


def test_grid_has_each_objective_alone_at_each_level_then_the_pair_grid(objectives):
    prefs, objective_pairs = build_grid(objectives, GridConfig(objective_pairs=[["helpfulness", "verbosity"]],
                                                               pair_levels={"verbosity": [0, 3]}))
    singles = [p for p in prefs if len(p) == 1]
    assert len(singles) == 3 + 4 + 2
    assert [p for p in prefs if len(p) == 2] == [Preference.of(helpfulness=h, verbosity=v)
                                                 for h in range(3) for v in (0, 3)]
    assert objective_pairs == [("helpfulness", "verbosity")]


def test_old_grid_pairs_key_is_refused_with_its_new_name():
    with pytest.raises(ValueError, match=r"override 'grid.pairs=\[\]': 'pairs' was renamed to 'objective_pairs'"):
        load_config(EvalConfig, None, ["grid.pairs=[]"])


def test_old_generation_samples_key_is_refused_with_its_new_name():
    with pytest.raises(ValueError, match=r"'samples' was renamed to 'num_samples'"):
        load_config(EvalConfig, None, ["generation.samples=2"])
    assert load_config(EvalConfig, None, ["generation.num_samples=2"]).generation.num_samples == 2


def test_grid_rejects_a_level_out_of_range(objectives):
    with pytest.raises(ValueError, match="grid.pair_levels.verbosity: level 9"):
        build_grid(objectives, GridConfig(pair_levels={"verbosity": [9]}))


def test_prompt_selection_alternates_safety_tags_and_is_seeded():
    records = [PromptRecord(id=f"s{i}", prompt="x", tags={"safety": "safe"}) for i in range(5)]
    records += [PromptRecord(id=f"u{i}", prompt="x", tags={"safety": "unsafe"}) for i in range(2)]
    chosen = select_prompts(records, 4, seed=3)
    assert sorted(r.tags["safety"] for r in chosen) == ["safe", "safe", "unsafe", "unsafe"]
    assert [r.id for r in chosen] == [r.id for r in select_prompts(records, 4, seed=3)]


def test_eval_writes_generations_judged_exactly_and_metrics_with_a_before(tiny_eval_run):
    rows = [json.loads(line) for line in (tiny_eval_run / "generations-policy.jsonl").read_text().splitlines()]
    # 3 prompts x (9 singles + 4 pair cells) x 2 samples
    assert len(rows) == 3 * 13 * 2
    for row in rows:  # the exact judge is the word count through the stored bins
        words = word_count(row["completion"])
        assert row["levels"]["exact"]["verbosity"] == sum(words > e for e in (2, 5, 10))
        assert set(row["levels"]["judge"]) == {"helpfulness", "harmlessness"}
        assert set(row["levels"]["reward_model"]) == {"helpfulness", "verbosity", "harmlessness"}
    saved = json.loads((tiny_eval_run / "metrics.json").read_text())
    assert saved["sources"]["judge"] == {"helpfulness": "judge", "verbosity": "exact", "harmlessness": "judge"}
    for label in ("base", "policy"):
        verbosity = saved["policies"][label]["controllability"]["judge"]["verbosity"]
        assert verbosity["n"] == 3 * 4 * 2 and verbosity["prompts"] == 3
        requested = [Preference.parse(r["preference"]).as_dict()["verbosity"] for r in rows
                     if Preference.parse(r["preference"]).as_dict().keys() == {"verbosity"}]
        achieved = [r["levels"]["exact"]["verbosity"] for r in rows
                    if Preference.parse(r["preference"]).as_dict().keys() == {"verbosity"}]
        if label == "policy":  # the stored figure is the hit rate of the stored rows
            assert verbosity["hit_rate"]["value"] == pytest.approx(
                sum(a == b for a, b in zip(requested, achieved)) / len(requested))
        pareto = saved["policies"][label]["pareto"]["judge"]["helpfulness+verbosity"]
        assert len(pareto["points"]) == 4 and pareto["reference_point"] == [0.0, 0.0]
        assert 0.0 <= pareto["hypervolume"]["value"] <= 1.0


def test_report_has_tables_plots_examples_and_html(tiny_eval_run):
    report = (tiny_eval_run / "report.md").read_text()
    for heading in ("## Judges", "## Controllability, judged by independent judges",
                    "### Pareto fronts, judged by independent judges", "## Example completions"):
        assert heading in report
    assert "| verbosity | word count (exact) | hit rate |" in report
    for image in ("controllability-judge.png", "pareto-judge.png", "controllability-reward_model.png"):
        assert (tiny_eval_run / image).stat().st_size > 1000 and f"]({image})" in report
    summary = (tiny_eval_run / "summary.md").read_text()  # the README's tables: before -> after RL
    assert "| verbosity | word count (exact) |" in summary and " → " in summary
    html = (tiny_eval_run / "report.html").read_text()
    assert "<table>" in html and '<img src="controllability-judge.png"' in html


def test_training_curves_come_from_the_rl_run_log(tiny_eval_run, tmp_path):
    from moslim.evaluation.report import write_report

    run = {"steps": [{"step": i, "reward": 0.1 * i, "moslim/verbosity/hit_rate": 0.25} for i in (1, 2, 3)]}
    (tmp_path / "moslim_run.json").write_text(json.dumps(run))
    write_report(tiny_eval_run, tmp_path / "report", rl_run=tmp_path / "moslim_run.json")
    assert "From `" in (tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "report" / "training-curves.png").exists()


def test_eval_reuses_generations_when_run_again(tmp_path, tiny_causal_lm_dir, tiny_reward_model_dir,
                                                eval_prompts, monkeypatch):
    cfg = tiny_eval_config(tmp_path, tiny_causal_lm_dir, tiny_reward_model_dir, eval_prompts,
                           base_policy="null", num_prompts=2)
    run_evaluation(cfg, show_progress=False)
    first = (tmp_path / "eval" / "generations-policy.jsonl").read_text()

    def no_generation(*args, **kwargs):
        raise AssertionError("generated again although the settings did not change")

    monkeypatch.setattr("moslim.evaluation.runner.generate_rows", no_generation)
    run_evaluation(cfg, show_progress=False)
    assert (tmp_path / "eval" / "generations-policy.jsonl").read_text() == first


def test_same_policy_before_and_after_shows_no_change(tiny_eval_run):
    # base and "RL" policy are the same tiny Llama with the same seed: identical completions, so the
    # paired change is exactly zero, interval included.
    saved = json.loads((tiny_eval_run / "metrics.json").read_text())
    change = saved["rl_change"]["judge"]["verbosity"]
    for metric in ("hit_rate", "mean_abs_error"):
        assert change[metric] == {"value": 0.0, "ci": [0.0, 0.0]}
    assert "change (paired 95% CI)" in (tiny_eval_run / "report.md").read_text()


def test_both_policies_are_asked_in_the_words_the_policy_was_trained_with(tmp_path, tiny_causal_lm_dir,
                                                                         tiny_reward_model_dir, eval_prompts,
                                                                         objectives, monkeypatch):
    # RL's data.objectives may word the levels otherwise; the policy saves them, and the evaluation asks the base
    # and the policy in them (else the base is asked one thing and the policy, trained on another, a third).
    import shutil

    from moslim.objectives import ObjectiveSet

    policy = tmp_path / "policy"
    shutil.copytree(tiny_causal_lm_dir, policy)
    spec = objectives.to_dict()
    spec["objectives"][1]["levels"][0] = "REWORDED: a few words only"
    ObjectiveSet.from_dict(spec).to_yaml(policy / "objectives.yaml")
    seen = []

    def record(policy_path, cells, wording, *args, **kwargs):
        seen.append(wording[objectives.names[1]].level_descriptions[0])
        return [{"prompt_id": r.id, "question": "q", "tags": r.tags, "preference": p.to_string(), "sample": 0,
                 "completion": "an answer", "levels": {}} for r, p in cells]

    monkeypatch.setattr("moslim.evaluation.runner.generate_rows", record)
    cfg = tiny_eval_config(tmp_path, policy, tiny_reward_model_dir, eval_prompts, num_prompts=2)
    metrics = run_evaluation(cfg, show_progress=False)
    assert seen == ["REWORDED: a few words only"] * 2  # base, then policy
    assert metrics["settings"]["objectives"][1]["levels"][0] == "REWORDED: a few words only"

    spec["objectives"][1]["levels"] = spec["objectives"][1]["levels"][:2]  # not the reward model's levels
    ObjectiveSet.from_dict(spec).to_yaml(policy / "objectives.yaml")
    with pytest.raises(ValueError, match="the policy's saved objectives .* does not match the reward model's"):
        run_evaluation(tiny_eval_config(tmp_path, policy, tiny_reward_model_dir, eval_prompts), show_progress=False)
