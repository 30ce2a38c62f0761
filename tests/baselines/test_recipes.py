"""Each baseline recipe runs real TRL steps on tiny models, then is evaluated on the grid; stages resume."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from moslim.baselines.recipes import RUN_FILE, run_baseline


def _changed(a, b) -> bool:
    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return any(not (x[k] == y[k]).all() for k in x)


def test_morlhf_trains_m_policies_with_their_share_of_the_steps(baseline_config, tiny_causal_lm_dir):
    cfg = baseline_config("morlhf")
    summary = run_baseline("morlhf", cfg, progress=False)
    # M = 2 policies at the grid's ends; equal compute: 4 MOSLIM steps / 2 = 2 steps each
    assert [p["weights"] for p in summary["points"]] == [[0.0, 1.0], [1.0, 0.0]]
    for name in ("w0.00", "w1.00"):
        run = json.loads((cfg_path(cfg) / "policies" / name / "moslim_run.json").read_text())
        assert run["global_step"] == 2
        assert run["config"]["reward"]["method"] == "moslim.baselines.rewards:linear_scalarisation"
        assert run["config"]["data"]["num_named"] == [0, 0]
        assert _changed(tiny_causal_lm_dir, cfg_path(cfg) / "policies" / name / "final")
    c = summary["compute"]
    assert c["training_runs"] == 2 and c["rl_steps"] == 4 and c["model_copies"] == 2 and c["cpu_seconds"] > 0
    assert c["budget"] == "equal_compute" and c["peak_rss_mib"] > 0
    assert all(p["n"] == 2 and all(0 <= v <= 1 for v in p["achieved"]) for p in summary["points"])
    # harmlessness: the prompts' known safety x the refusal rule (trusted: macro-F1 0.86 on XSTest's human labels)
    assert summary["judge_of"] == {"verbosity": "exact", "harmlessness": "judge"}


def cfg_path(cfg):
    from pathlib import Path

    return Path(cfg.out)


def test_a_finished_run_reuses_every_stage(baseline_config):
    cfg = baseline_config("again", "rl.policies=1", "grid.points=3")
    run_baseline("morlhf", cfg, progress=False)
    seen = []
    run_baseline("morlhf", cfg, announce=lambda i, n, stage, reused: seen.append((stage, reused)), progress=False)
    assert seen == [("train w0.50", True), ("evaluate", True)]


def test_a_killed_run_resumes_at_the_unfinished_stage(baseline_config):
    cfg = baseline_config("killed", "rl.policies=2", "grid.points=3")
    run_baseline("morlhf", cfg, progress=False)
    out = cfg_path(cfg)
    (out / "policies" / "w1.00" / "moslim_run.json").unlink()  # as if killed before its marker
    (out / RUN_FILE).unlink()
    seen = []
    run_baseline("morlhf", cfg, announce=lambda i, n, stage, reused: seen.append((stage, reused)), progress=False)
    assert seen == [("train w0.00", True), ("train w1.00", False), ("evaluate", True)]
    run = json.loads((out / "policies" / "w1.00" / "moslim_run.json").read_text())
    assert run["resumed_from"].endswith("checkpoint-2")  # nothing retrained: the checkpoint was complete


def test_soups_trains_one_policy_per_objective_and_serves_every_point(baseline_config, tiny_causal_lm_dir):
    cfg = baseline_config("soups")
    summary = run_baseline("soups", cfg, progress=False)
    out = cfg_path(cfg)
    for name, weights in (("verbosity", [0.0, 1.0, 0.0]), ("harmlessness", [0.0, 0.0, 1.0])):
        run = json.loads((out / "policies" / name / "moslim_run.json").read_text())
        assert run["config"]["reward"]["options"]["weights"] == weights  # heads: helpfulness, verbosity, harmlessness
        assert _changed(tiny_causal_lm_dir, out / "policies" / name / "final")
    assert len(summary["points"]) == 11 and all(p["n"] == 2 for p in summary["points"])
    assert summary["compute"]["training_runs"] == 2 and summary["compute"]["serve_new_preference_s"] >= 0
    assert not list((out / "eval").glob(".soup-*"))  # interpolations are transient


def test_ric_scores_offline_data_sfts_and_runs_an_online_round(baseline_config, tiny_causal_lm_dir):
    cfg = baseline_config("ric", "ric.online_rounds=1", "grid.points=3")
    summary = run_baseline("ric", cfg, progress=False)
    folder = cfg_path(cfg) / "ric"
    data = json.loads((folder / "data.json").read_text())
    assert data["rows"] == 6 and all(lo <= hi for lo, hi in zip(data["low"], data["high"]))
    online = [json.loads(line) for line in (folder / "online-1.jsonl").read_text().splitlines()]
    assert len(online) == 4 and all(set(r["scores"]) == {"verbosity", "harmlessness"} for r in online)
    for r in range(2):  # equal compute: 4 steps over 2 SFT rounds
        assert json.loads((folder / f"round-{r}" / "sft_run.json").read_text())["global_step"] == 2
    final = folder / "round-1" / "final"
    assert _changed(tiny_causal_lm_dir, final)
    assert not any(p.suffix in (".bin", ".pt") for p in final.iterdir())
    info = json.loads((final / "ric.json").read_text())
    # the evaluation's system messages carry RiC's desired rewards: at w = (0, 1) verbosity gets its minimum
    first = summary["points"][0]
    assert f"verbosity {info['low'][0]:.2f}" in first["system"]
    assert f"harmlessness {info['high'][1]:.2f}" in first["system"]
    middle = summary["points"][1]  # w = (0.5, 0.5): both weights >= 1/2, both rewards at their maximum
    assert middle["system"].endswith(f"verbosity {info['high'][0]:.2f}, harmlessness {info['high'][1]:.2f}")
    c = summary["compute"]
    assert c["training_runs"] == 1 and c["sft_steps"] == 4 and c["rl_steps"] == 0


@pytest.mark.parametrize("method", ["moslim", "prompt-only"])
def test_fixed_policies_get_the_points_target_levels_in_their_prompt(baseline_config, method):
    cfg = baseline_config(method)
    summary = run_baseline(method, cfg, progress=False)
    assert [p["preference"] for p in summary["points"]][::5] == [
        "harmlessness=1,verbosity=0", "harmlessness=1,verbosity=2", "harmlessness=0,verbosity=3"]
    assert "verbosity: level 0" in summary["points"][0]["system"]
    assert summary["compute"]["model_copies"] == (0 if method == "prompt-only" else 1)
    assert set(summary["following"]) == {"verbosity", "harmlessness"}


def test_a_third_objective_in_the_grid_is_refused(baseline_config):
    cfg = baseline_config("bad", "grid.objectives=[verbosity, harmlessness, helpfulness]")
    with pytest.raises(ValueError, match="expected two different objectives"):
        run_baseline("morlhf", cfg)


def test_soups_of_lora_adapters_train_and_evaluate(baseline_config):
    cfg = baseline_config("soups-lora", "grid.points=3", "rl.moslim_steps=2",
                          "rl.overrides=[policy.lora.enabled=true, policy.lora.save=adapter, policy.lora.r=4]")
    summary = run_baseline("soups", cfg, progress=False)
    final = cfg_path(cfg) / "policies" / "verbosity" / "final"
    assert (final / "adapter_config.json").exists() and (final / "adapter_model.safetensors").exists()
    assert len(summary["points"]) == 3 and all(p["n"] == 2 for p in summary["points"])
