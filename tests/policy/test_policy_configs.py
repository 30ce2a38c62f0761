"""Every RL config in configs/ loads, passes its checks, and TRL accepts its `trl` section."""

from __future__ import annotations

from pathlib import Path

import pytest

from moslim.config import load_config
from moslim.policy.train import RLConfig, trl_args

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RL_CONFIGS = sorted(CONFIGS.glob("rl*.yaml")) + [CONFIGS / "demo" / "rl.yaml"]
ACCELERATE_CONFIGS = sorted((CONFIGS / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", RL_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_rl_config_loads_and_trl_accepts_its_options(path, tmp_path):
    assert path.read_text().startswith("# moslim rl train --config "), "first line: the command that runs it"
    config = load_config(RLConfig, path)
    config.check()
    # GPU configs are checked on CPU here: use_cpu lets TrainingArguments accept bf16 without CUDA.
    args = trl_args(config.train.algorithm, tmp_path, {**config.trl, "use_cpu": True})
    assert args.num_generations == config.trl["num_generations"]


def test_demo_config_fits_every_verbosity_level_within_its_completion_cap():
    config = load_config(RLConfig, CONFIGS / "demo" / "rl.yaml")
    # the top verbosity level is > 70 words; at ~0.85 words per token the cap must allow ~85+ tokens
    assert config.trl["max_completion_length"] * 0.85 > 70
    assert config.trl["use_cpu"] and config.trl["bf16"] == "auto"  # bf16 only where the CPU runs it natively


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_config_parses(path):
    from accelerate.commands.config.config_args import ClusterConfig

    assert path.read_text().startswith("# accelerate launch --config_file ")
    config = ClusterConfig.from_yaml_file(str(path))
    assert config.num_processes >= 2


def test_ppo_is_an_algorithm_with_its_own_section(tmp_path):
    path = tmp_path / "rl.yaml"
    path.write_text("train:\n  algorithm: ppo\nppo:\n  lam: 0.9\n  value_learning_rate: 1.0e-5\n")
    config = load_config(RLConfig, path)
    assert config.train.algorithm == "ppo" and config.ppo.lam == 0.9 and config.ppo.value_learning_rate == 1e-5
    with pytest.raises(ValueError, match=r"'a2c' is not one of 'grpo', 'rloo', 'ppo'"):
        load_config(RLConfig, None, ["train.algorithm=a2c"])
    with pytest.raises(ValueError, match="unknown key"):
        load_config(RLConfig, None, ["train.algorithm=ppo", "ppo.lamda=0.9"])
