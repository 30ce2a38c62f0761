"""The shipped reward-model configs load, name the command that runs them, and point at shipped data."""

from __future__ import annotations

from pathlib import Path

import pytest

from moslim.config import load_config
from moslim.paths import resolve_path
from moslim.reward.config import RewardTrainConfig

CONFIGS = Path(__file__).parents[2] / "configs"
FILES = sorted(CONFIGS.glob("rm*.yaml")) + [CONFIGS / "demo" / "rm.yaml", CONFIGS / "demo" / "judge.yaml"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_loads_and_starts_with_its_command(path):
    config = load_config(RewardTrainConfig, path)
    assert path.read_text().splitlines()[0] == f"# moslim rm train --config configs/{path.relative_to(CONFIGS)}"
    for file in (config.data.objectives, config.data.train, config.data.eval, config.data.pairs):
        assert file is None or resolve_path(file).exists(), file


def test_demo_judge_uses_the_other_backbone_and_other_data_than_the_demo_rm():
    rm = load_config(RewardTrainConfig, CONFIGS / "demo" / "rm.yaml")
    judge = load_config(RewardTrainConfig, CONFIGS / "demo" / "judge.yaml")
    assert rm.model.backbone != judge.model.backbone
    assert rm.data.train != judge.data.train
