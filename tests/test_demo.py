"""`moslim demo` end to end on tiny models: every stage runs its real command, a second run reuses them."""

import json

import pytest
import yaml

from moslim.cli import main


def write_yaml(path, data):
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


@pytest.fixture
def tiny_demo_config(tmp_path, tiny_causal_lm_dir, tiny_encoder_dir):
    data = {"objectives": "moslim:assets/demo/objectives.yaml", "max_length": 48, "max_train_examples": 16,
            "max_eval_examples": 16, "max_pairs": 8}
    train = {"max_steps": 2, "batch_size": 4, "device": "cpu", "progress": False, "save_every": 100}
    rm = write_yaml(tmp_path / "rm.yaml", {"model": {"backbone": str(tiny_encoder_dir)}, "data": data,
                                            "train": train})
    judge = write_yaml(tmp_path / "judge.yaml", {
        "model": {"backbone": str(tiny_causal_lm_dir)},
        "data": {**data, "objectives": "moslim:assets/demo/judge_objectives.yaml",
                 "train": "moslim:assets/demo/judge_train.jsonl.gz", "eval": "moslim:assets/demo/judge_eval.jsonl.gz",
                 "pairs": None},
        "train": {**train, "seed": 1}})
    rl = write_yaml(tmp_path / "rl.yaml", {
        "policy": {"model": str(tiny_causal_lm_dir)},
        "data": {"prompts": "moslim:assets/demo/prompts_train.jsonl", "max_prompts": 8},
        "train": {"rollout": "stock"},
        "trl": {"per_device_train_batch_size": 4, "num_generations": 2, "max_completion_length": 8,
                "max_steps": 2, "save_steps": 100, "logging_steps": 1, "use_cpu": True, "report_to": "none",
                "seed": 0, "disable_tqdm": True}})
    evaluation = write_yaml(tmp_path / "eval.yaml", {
        "prompts": "moslim:assets/demo/prompts_eval.jsonl", "num_prompts": 2,
        "grid": {"objective_pairs": [["verbosity", "harmlessness"]], "pair_levels": {"verbosity": [0, 3]}},
        "generation": {"max_new_tokens": 8, "batch_size": 16},
        "bootstrap": {"num_resamples": 20}})
    return write_yaml(tmp_path / "demo.yaml", {
        "out": str(tmp_path / "demo"), "models": [],
        "rm": {"config": rm}, "judge": {"config": judge}, "rl": {"config": rl}, "eval": {"config": evaluation}})


def test_demo_runs_every_stage_then_reuses_them(tmp_path, tiny_demo_config, tiny_causal_lm_dir, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--config", tiny_demo_config]) == 0
    printed = capsys.readouterr().out  # each stage's own results, as its command prints them
    assert printed.count("reward model, per head") == 2 and "GRPO: 2 steps" in printed
    assert "controllability: requested vs achieved" in printed
    stages = json.loads((out / "stages.json").read_text())["stages"]
    assert list(stages) == ["models", "rm", "judge", "rl", "eval", "report"]
    assert stages["models"]["status"] == "reused"  # nothing to prepare in this config
    assert all(stages[s]["status"] == "ran" and stages[s]["seconds"] >= 0 and stages[s]["cpu_seconds"] > 0
               for s in ("rm", "judge", "rl", "eval"))
    # Each stage its own peak resident memory, none above the process's; the RL run records its own too.
    record = json.loads((out / "stages.json").read_text())
    assert all(0 < stages[s]["peak_rss_mib"] <= record["peak_rss_mib"] for s in ("rm", "judge", "rl", "eval"))
    assert {stages[s]["peak_rss_since"] for s in ("rm", "rl")} == {"stage start"}
    assert 0 < json.loads((out / "rl" / "moslim_run.json").read_text())["peak_rss_mib"] <= record["peak_rss_mib"]
    assert "peak RSS (GiB)" in printed
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    # The "before RL" control is the RL run's starting policy, judged by the exact verbosity judge.
    assert metrics["settings"]["config"]["base_policy"] == str(tiny_causal_lm_dir)
    assert set(metrics["policies"]) == {"base", "policy"}
    assert metrics["sources"]["judge"]["verbosity"] == "exact"
    assert metrics["judges"]["judge_model"]["backbone"] == str(tiny_causal_lm_dir)
    assert "string-match rule" in metrics["judges"]["judge"]["rule"]  # harmlessness: refusal by the rule
    report = (out / "report.md").read_text()
    assert "## Controllability, judged by independent judges" in report
    assert (out / "report.html").exists() and (out / "controllability-judge.png").exists()

    # A second run reuses every finished stage (the report is always rewritten).
    assert main(["demo", "--config", tiny_demo_config]) == 0
    again = json.loads((out / "stages.json").read_text())["stages"]
    assert [again[s]["status"] for s in ("models", "rm", "judge", "rl", "eval")] == ["reused"] * 5
    assert again["rl"]["seconds"] == stages["rl"]["seconds"]  # the time of the run that made it

    # --force eval redoes eval and report only.
    assert main(["demo", "--config", tiny_demo_config, "--force", "eval"]) == 0
    forced = json.loads((out / "stages.json").read_text())["stages"]
    assert forced["rl"]["status"] == "reused" and forced["eval"]["status"] == "ran"


def test_demo_without_a_judge_model_judges_by_the_rules(tmp_path, tiny_demo_config, capsys):
    config = yaml.safe_load(open(tiny_demo_config))
    config["judge"] = None  # the stage is off: eval judges with the exact verbosity and refusal rules only
    path = write_yaml(tmp_path / "no_judge.yaml", config)
    assert main(["demo", "--config", path]) == 0
    assert "off in this config" in capsys.readouterr().out
    out = tmp_path / "demo"
    stages = json.loads((out / "stages.json").read_text())["stages"]
    assert stages["judge"] == {"status": "off"} and not (out / "judge").exists()
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert "judge_model" not in metrics["judges"] and metrics["sources"]["judge"]["verbosity"] == "exact"
    assert "string-match rule" in metrics["judges"]["judge"]["rule"]


def test_demo_names_the_stage_that_did_not_produce_its_output(tmp_path, tiny_demo_config, capsys):
    config = yaml.safe_load(open(tiny_demo_config))
    config["rm"]["overrides"] = ["data.train=missing.jsonl"]  # the RM command fails on it
    path = write_yaml(tmp_path / "broken.yaml", config)
    assert main(["demo", "--config", path]) == 1
    stages = json.loads((tmp_path / "demo" / "stages.json").read_text())["stages"]
    printed = " ".join(capsys.readouterr().out.split())
    assert stages["rm"]["status"] == "failed" and "stopped at stage rm" in printed and "missing.jsonl" in printed


def test_demo_stages_call_the_library_not_the_command_line():
    import ast

    import moslim.demo

    tree = ast.parse(open(moslim.demo.__file__, encoding="utf-8").read())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name and name.startswith("moslim.cli")}


def test_demo_rejects_an_unknown_stage_to_force(tiny_demo_config):
    assert main(["demo", "--config", tiny_demo_config, "--force", "rl_train"]) == 2


@pytest.mark.parametrize("name", ["demo.yaml", "quick.yaml"])
def test_demo_configs_load_and_every_stage_accepts_its_overrides(name):
    from moslim.config import load_config
    from moslim.demo import REPO_ROOT
    from moslim.demo.config import DemoConfig
    from moslim.evaluation.runner import EvalConfig
    from moslim.policy.train import RLConfig
    from moslim.reward.config import RewardTrainConfig

    path = REPO_ROOT / "configs" / "demo" / name
    assert path.read_text().startswith("# moslim demo")
    cfg = load_config(DemoConfig, path)
    for section, config_class in (("rm", RewardTrainConfig), ("judge", RewardTrainConfig), ("rl", RLConfig),
                                  ("eval", EvalConfig)):
        stage = getattr(cfg, section)
        if stage is None:  # a stage the config switches off
            continue
        load_config(config_class, REPO_ROOT / stage.config, stage.overrides)  # unknown keys would raise


def test_eval_config_names_its_command_and_ships_its_prompts():
    from moslim.config import load_config
    from moslim.demo import REPO_ROOT
    from moslim.evaluation.runner import EvalConfig
    from moslim.paths import resolve_path

    path = REPO_ROOT / "configs" / "demo" / "eval.yaml"
    assert path.read_text().startswith("# moslim eval --config configs/demo/eval.yaml")
    assert resolve_path(load_config(EvalConfig, path).prompts).exists()
