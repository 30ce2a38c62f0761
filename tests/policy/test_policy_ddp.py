"""Two-process data parallel RL on CPU (torchrun, gloo): both ranks end with identical parameters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from moslim.config import to_dict


@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_two_rank_rl_steps_leave_identical_parameters(tmp_path, make_config, tiny_causal_lm_dir, tiny_rm_dir,
                                                      prompts_file, algorithm):
    config = make_config(tiny_causal_lm_dir, tiny_rm_dir, prompts_file, tmp_path / "run", algorithm,
                         trl={"per_device_train_batch_size": 2, "save_strategy": "no"})
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(to_dict(config)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    worker = Path(__file__).with_name("ddp_worker.py")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(worker), str(config_path), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    info = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(i == {"world_size": 2, "global_step": 2} for i in info)
    rank0, rank1 = (load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    before = load_file(tiny_causal_lm_dir / "model.safetensors")
    assert any(not torch.equal(before[k], rank0[k]) for k in before), "2 steps moved no parameter"
    if algorithm == "ppo":
        assert rank0["critic.score.weight"].abs().sum() > 0, "the critic's head never left zero"
