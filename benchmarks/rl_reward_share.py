"""The MOSLIM reward's share of an RL step, and our training path vs a bare TRL GRPOTrainer.

    nice -n 5 .venv/bin/python benchmarks/rl_reward_share.py [--rm runs/demo/rm] [--steps 3]

Same policy (SmolLM2-135M-Instruct), same prompts, same GRPO settings in every variant, run one after
the other in this process:
  A  bare TRL GRPOTrainer + a trivial python reward (answer length)
  B  bare TRL GRPOTrainer + the MOSLIM reward (reward model forward + mapping)
  C  moslim's training path (build_trainer), rollout=stock
  D  moslim's training path, rollout=auto (the fast CPU rollout on CPU)
learning_rate is 0 so the policy, and hence what it samples, stays the same across steps and
variants (each variant starts from the same seed). The first step of each variant is a warm-up and
is not counted. A letter may repeat (--variants ABDDBA): its measured steps are pooled, and an
A-B-B-A order cancels a load that drifts linearly while the benchmark runs. Without --rm the reward
model is a fresh MultiHeadRewardModel on all-MiniLM-L6-v2 (random heads cost the same as trained ones).
Prints medians and the ratios; writes a JSON too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from moslim import models
from moslim.config import from_dict
from moslim.objectives import ObjectiveSet
from moslim.paths import resolve_path
from moslim.policy.data import build_rl_dataset, read_prompt_records
from moslim.policy.reward_fn import MoslimReward, completion_text
from moslim.policy.train import RLConfig, StepTimer, build_trainer
from moslim.precision import native_bf16


def trivial_reward(completions, **kwargs):
    return [len(completion_text(c)) / 100.0 for c in completions]


def random_head_rm(folder: Path) -> Path:
    from moslim.reward.model import MultiHeadRewardModel, save_reward_model

    objectives = ObjectiveSet.from_yaml(resolve_path("moslim:assets/demo/objectives.yaml"))
    backbone = models.resolve("all-minilm-l6-v2")
    model = MultiHeadRewardModel.from_backbone(backbone, objectives, seed=0)
    return save_reward_model(model, AutoTokenizer.from_pretrained(backbone), folder / "rm")


def trl_options(a) -> dict:
    return {"use_cpu": True, "bf16": native_bf16("cpu"), "per_device_train_batch_size": a.prompts * a.generations,
            "num_generations": a.generations, "max_completion_length": a.tokens, "learning_rate": 0.0,
            "max_steps": a.steps + 1, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
            "seed": 0, "disable_tqdm": True}


def run_bare(a, policy: str, rm: Path, reward_kind: str, out: Path) -> list[dict]:
    from moslim.reward.scorer import RewardScorer

    scorer = RewardScorer.from_pretrained(rm, device="cpu")
    records = read_prompt_records(a.prompts_file)[: a.prompts * (a.steps + 1)]
    dataset = build_rl_dataset(records, scorer.objectives, seed=0)
    reward = trivial_reward if reward_kind == "trivial" else MoslimReward(scorer)
    tokenizer = AutoTokenizer.from_pretrained(policy)
    model = AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32)
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=GRPOConfig(output_dir=str(out), **trl_options(a)),
                          train_dataset=dataset, processing_class=tokenizer)
    trainer.add_callback(StepTimer(trainer))  # timing only: wraps _generate / _calculate_rewards
    trainer.train()
    return trainer.state.log_history


def run_ours(a, policy: str, rm: Path, rollout: str, out: Path) -> list[dict]:
    config = from_dict(RLConfig, {
        "policy": {"model": policy}, "reward": {"model": str(rm)},
        "data": {"prompts": str(a.prompts_file), "max_prompts": a.prompts * (a.steps + 1)},
        "train": {"algorithm": "grpo", "rollout": rollout, "output_dir": str(out), "resume": "never"},
        "trl": trl_options(a)})
    trainer, *_ = build_trainer(config)
    trainer.train()
    return trainer.state.log_history


def measured_steps(history: list[dict]) -> list[dict]:
    return [h for h in history if "time/step" in h][1:]  # first step: warm-up


def summarise(steps: list[dict]) -> dict:
    return {key: statistics.median(h[f"time/{key}"] for h in steps)
            for key in ("step", "generation", "reward", "update")} | {
        "mean_length": statistics.mean(h["completions/mean_length"] for h in steps), "n": len(steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rm", help="reward model folder (default: random heads on all-MiniLM-L6-v2)")
    parser.add_argument("--policy", default="smollm2-135m-instruct")
    parser.add_argument("--prompts-file", default="moslim:assets/demo/prompts_train.jsonl")
    parser.add_argument("--steps", type=int, default=3, help="measured steps per variant (+1 warm-up)")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--variants", default="ABCD")
    parser.add_argument("--json", default="runs/bench/rl_reward_share.json")
    a = parser.parse_args()
    torch.manual_seed(0)
    policy = models.resolve(a.policy)
    work = Path(tempfile.mkdtemp(prefix="moslim-bench-"))
    rm = Path(a.rm) if a.rm else random_head_rm(work)
    runs = {"A": ("bare TRL + trivial reward", lambda o: run_bare(a, policy, rm, "trivial", o)),
            "B": ("bare TRL + MOSLIM reward", lambda o: run_bare(a, policy, rm, "moslim", o)),
            "C": ("moslim path, rollout=stock", lambda o: run_ours(a, policy, rm, "stock", o)),
            "D": ("moslim path, rollout=auto", lambda o: run_ours(a, policy, rm, "auto", o))}
    pooled: dict[str, list[dict]] = {}
    for i, key in enumerate(a.variants):
        name, fn = runs[key]
        steps = measured_steps(fn(work / f"{i}{key}"))
        pooled.setdefault(key, []).extend(steps)
        r = summarise(steps)
        print(f"{key} {name:28s} step {r['step']:6.2f} s  generation {r['generation']:6.2f}  reward "
              f"{r['reward']:5.2f}  update {r['update']:6.2f}  mean length {r['mean_length']:5.1f}", flush=True)
    results = {key: summarise(steps) | {"name": runs[key][0]} for key, steps in pooled.items()}
    print(f"\n{a.prompts} prompts x {a.generations} generations x {a.tokens} tokens; medians over each "
          f"variant's measured steps: " + ", ".join(f"{k} {v['step']:.2f} s (n={v['n']})" for k, v in results.items()))
    ratios = {}
    if {"A", "B"} <= results.keys():
        ratios["B/A (MOSLIM reward vs trivial reward, step time)"] = results["B"]["step"] / results["A"]["step"]
        ratios["reward share of B's step"] = results["B"]["reward"] / results["B"]["step"]
    if {"B", "C"} <= results.keys():
        ratios["C/B (moslim path rollout=stock vs bare TRL)"] = results["C"]["step"] / results["B"]["step"]
    if {"B", "D"} <= results.keys():
        ratios["D/B (moslim path rollout=auto vs bare TRL)"] = results["D"]["step"] / results["B"]["step"]
    for name, value in ratios.items():
        print(f"{name}: {value:.3f}")
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps({"settings": vars(a) | {"rm": str(rm)}, "results": results,
                                        "ratios": ratios}, indent=1, default=str))


if __name__ == "__main__":
    main()
