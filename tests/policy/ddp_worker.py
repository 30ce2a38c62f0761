"""Run by test_policy_ddp.py under torchrun: 2 RL steps, then each rank saves its own parameters (and PPO's critic).

usage: torchrun --standalone --nproc_per_node 2 ddp_worker.py CONFIG_JSON OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from moslim.config import from_dict
from moslim.policy.train import RLConfig, build_trainer


def main(config_path: str, out_dir: str) -> None:
    config = from_dict(RLConfig, json.loads(Path(config_path).read_text()))
    trainer, *_ = build_trainer(config)
    trainer.train()
    rank = int(os.environ["RANK"])
    model = trainer.accelerator.unwrap_model(trainer.model)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    state.pop("lm_head.weight", None)  # tied to the embeddings: saved once
    critic = getattr(trainer, "value_model", None)  # PPO's critic, trained under DDP too
    if critic is not None:
        critic = trainer.accelerator.unwrap_model(critic)
        state.update({f"critic.{k}": v.detach().contiguous().clone() for k, v in critic.state_dict().items()})
    save_file(state, str(Path(out_dir) / f"rank{rank}.safetensors"))
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(
        {"world_size": trainer.accelerator.num_processes, "global_step": trainer.state.global_step}))
    # Tear the gloo group down explicitly: left to interpreter exit, its threads were seen to abort
    # a rank ("terminate called without an active exception") after all the work was done.
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip C++ static destructors of the distributed runtime (the same abort, at exit)
