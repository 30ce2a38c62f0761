"""Every config in configs/baselines/ opens with its command, loads, passes its checks, and the trainers it feeds
(MOSLIM's RL recipe with the baseline's reward; TRL's SFTConfig for RiC) accept their options."""

from __future__ import annotations

from pathlib import Path

import pytest

from moslim.baselines.config import BaselineConfig
from moslim.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BASELINES = sorted((CONFIGS / "baselines").glob("*.yaml"))
DEMO_STEPS = 40  # configs/demo/rl.yaml trl.max_steps: the baselines' equal-compute budget follows it


def _method(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first == f"# moslim baseline {first.split()[3]} --config configs/baselines/{path.name}", first
    return first.split()[3]


@pytest.mark.parametrize("path", BASELINES, ids=lambda p: p.name)
def test_baseline_config_loads_and_passes_its_checks(path, tmp_path, monkeypatch):
    monkeypatch.chdir(CONFIGS.parent)  # the configs name configs/demo/rl.yaml relative to the repository
    method = _method(path)
    cfg = load_config(BaselineConfig, path)
    cfg.check(method)
    assert cfg.grid.points == 11 and cfg.grid.objectives == ["verbosity", "harmlessness"]
    if method in ("morlhf", "soups"):
        from moslim.baselines.recipes import rl_config
        from moslim.policy.train import trl_args

        rl = rl_config(cfg, [0.5, 0.5], tmp_path / "p", cfg.steps_per_policy(cfg.rl.policies if method == "morlhf"
                                                                                 else 2),
                       ["helpfulness", "verbosity", "harmlessness"])
        rl.check()
        assert rl.reward.options == {"weights": [0.0, 0.5, 0.5]}
        assert trl_args(rl.train.algorithm, tmp_path, rl.trl).max_steps == DEMO_STEPS // (3 if method == "morlhf"
                                                                                         else 2)
    if method == "ric":
        from moslim.baselines.ric import sft_args

        assert sft_args(tmp_path, cfg.ric.sft, cfg.steps_per_policy(1)).max_steps == DEMO_STEPS


def test_every_method_has_a_config():
    assert {_method(p) for p in BASELINES} == {"morlhf", "soups", "ric", "moslim", "prompt-only"}


def test_moslim_steps_follow_the_rl_recipe_unless_set(tmp_path, monkeypatch):
    monkeypatch.chdir(CONFIGS.parent)
    from moslim.baselines.config import BaselineConfig as Config

    assert load_config(Config, None, []).moslim_steps() == DEMO_STEPS
    assert load_config(Config, None, ["rl.overrides=[trl.max_steps=12]"]).steps_per_policy(3) == 4
    assert load_config(Config, None, ["rl.moslim_steps=9", "rl.budget=equal_steps"]).steps_per_policy(3) == 9
    recipe = tmp_path / "rl.yaml"
    recipe.write_text("trl: {learning_rate: 1.0e-5}\n")
    with pytest.raises(ValueError, match="sets no trl.max_steps"):
        load_config(Config, None, [f"rl.config={recipe}"]).moslim_steps()
