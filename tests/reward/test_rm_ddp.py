"""`moslim rm train` as two data-parallel processes on CPU (torchrun, gloo): both end with the same weights."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from moslim.config import save_config
from moslim.reward.model import MultiHeadRewardModel


@pytest.mark.parametrize("freeze_layers", [0, 1], ids=["full", "cached"])
def test_two_process_rm_train_ends_with_identical_parameters_on_both_ranks(tiny_rm_config, tmp_path, freeze_layers):
    # Pairs in the batches, evaluation during training and at the end; "cached": the demo's frozen-layer cache.
    config = dataclasses.replace(
        tiny_rm_config, output_dir=str(tmp_path / "ddp"),
        model=dataclasses.replace(tiny_rm_config.model, freeze_layers=freeze_layers),
        data=dataclasses.replace(tiny_rm_config.data, train_pairs=tiny_rm_config.data.pairs),
        train=dataclasses.replace(tiny_rm_config.train, max_steps=4, pair_weight=1.0, pair_batch_size=2, eval_every=2))
    path = tmp_path / "rm.yaml"
    save_config(config, path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "moslim", "rm", "train", "--config", str(path)],
        env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "moslim_run.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4
    hashes = summary["replica_sha256"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    assert any("eval_acc_verbosity" in h for h in summary["history"])
    # both ranks' batches count: 4 steps x 2 processes x 4 examples = 32 rows of 24
    assert summary["epochs"] == 1.33
    trained = load_file(tmp_path / "ddp" / "model.safetensors")
    fresh = MultiHeadRewardModel.from_backbone(config.model.backbone, MultiHeadRewardModel.from_pretrained(
        tmp_path / "ddp").objectives, input_format="plain").state_dict()
    key = "backbone.layers.1.mlp.up_proj.weight"
    assert not torch.equal(trained[key], fresh[key])
