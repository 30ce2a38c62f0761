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
                 "generation.max_new_tokens=12", "generation.samples=2", "generation.batch_size=8",
                 "bootstrap.num_resamples=50", "grid.pairs=[[helpfulness, verbosity]]",
                 "grid.pair_levels={helpfulness: [0, 2], verbosity: [0, 3]}"]
    if judge:
        overrides.append(f"judge={judge}")
    return load_config(EvalConfig, None, overrides + [f"{k}={v}" for k, v in extra.items()])


def test_grid_has_each_objective_alone_at_each_level_then_the_pair_grid(objectives):
    prefs, pairs = build_grid(objectives, GridConfig(pairs=[["helpfulness", "verbosity"]],
                                                     pair_levels={"verbosity": [0, 3]}))
    singles = [p for p in prefs if len(p) == 1]
    assert len(singles) == 3 + 4 + 2
    assert [p for p in prefs if len(p) == 2] == [Preference.of(helpfulness=h, verbosity=v)
                                                 for h in range(3) for v in (0, 3)]
    assert pairs == [("helpfulness", "verbosity")]


def test_grid_rejects_a_level_out_of_range(objectives):
    with pytest.raises(ValueError, match="grid.pair_levels.verbosity: level 9"):
        build_grid(objectives, GridConfig(pair_levels={"verbosity": [9]}))


def test_prompt_selection_alternates_safety_tags_and_is_seeded():
    records = [PromptRecord(id=f"s{i}", prompt="x", tags={"safety": "safe"}) for i in range(5)]
    records += [PromptRecord(id=f"u{i}", prompt="x", tags={"safety": "unsafe"}) for i in range(2)]
    chosen = select_prompts(records, 4, seed=3)
    assert sorted(r.tags["safety"] for r in chosen) == ["safe", "safe", "unsafe", "unsafe"]
    assert [r.id for r in chosen] == [r.id for r in select_prompts(records, 4, seed=3)]


def test_eval_on_tiny_models_writes_generations_and_metrics_judged_exactly(
        tmp_path, tiny_causal_lm_dir, tiny_reward_model_dir, tiny_judge_dir, eval_prompts):
    cfg = tiny_eval_config(tmp_path, tiny_causal_lm_dir, tiny_reward_model_dir, eval_prompts, judge=tiny_judge_dir)
    metrics = run_evaluation(cfg, show_progress=False)
    out = tmp_path / "eval"
    rows = [json.loads(line) for line in (out / "generations-policy.jsonl").read_text().splitlines()]
    # 3 prompts x (9 singles + 4 pair cells) x 2 samples
    assert len(rows) == 3 * 13 * 2
    for row in rows[:20]:  # the exact judge is the word count through the stored bins
        words = word_count(row["completion"])
        assert row["levels"]["exact"]["verbosity"] == sum(words > e for e in (2, 5, 10))
        assert set(row["levels"]["judge"]) == {"helpfulness", "harmlessness"}
        assert set(row["levels"]["reward_model"]) == {"helpfulness", "verbosity", "harmlessness"}
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["sources"]["judge"] == {"helpfulness": "judge", "verbosity": "exact", "harmlessness": "judge"}
    for label in ("base", "policy"):
        verbosity = saved["policies"][label]["controllability"]["judge"]["verbosity"]
        assert verbosity["n"] == 3 * 4 * 2 and verbosity["prompts"] == 3
        assert 0.0 <= verbosity["hit_rate"]["value"] <= 1.0
        pareto = saved["policies"][label]["pareto"]["judge"]["helpfulness+verbosity"]
        assert len(pareto["points"]) == 4 and pareto["reference_point"] == [0.0, 0.0]
        assert 0.0 <= pareto["hypervolume"]["value"] <= 1.0
    assert metrics["settings"]["prompts"] == saved["settings"]["prompts"]


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
