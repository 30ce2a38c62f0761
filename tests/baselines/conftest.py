"""Fixtures for the baseline tests: a tiny reward model with a verbosity labelling spec (the exact judge), a tiny
RL recipe YAML, prompt and offline-data files, and a baseline config builder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

QUESTIONS = ["what is the capital city of france ?", "write a short answer about water .",
             "how can i help you ?", "list three good things .", "explain why the cat is a good dog .",
             "who is the capital of water ?"]
ANSWERS = ["paris .", "water is good and safe .", "i can help with the answer .", "one two three .",
           "sorry i cannot .", "the city of paris is the capital of france and it is a good city ."]
LABELLING = {"verbosity": [{"signal": "words", "bins": "fixed", "edges": [2, 5, 10]}]}


@pytest.fixture(scope="session")
def tiny_rm(tmp_path_factory, tiny_encoder_dir, objectives) -> Path:
    from transformers import AutoTokenizer

    from moslim.reward.model import MultiHeadRewardModel, save_reward_model

    model = MultiHeadRewardModel.from_backbone(str(tiny_encoder_dir), objectives, labelling=LABELLING, seed=0)
    return save_reward_model(model, AutoTokenizer.from_pretrained(tiny_encoder_dir),
                             tmp_path_factory.mktemp("rm") / "rm")


@pytest.fixture(scope="session")
def data_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    prompts = [{"id": f"q{i}", "prompt": q, "source": "test", "tags": {"safety": "safe" if i % 2 else "unsafe"}}
               for i, q in enumerate(QUESTIONS)]
    # RiC's offline data; a factor's label (as in the demo's rows) is outside the tiny reward model's heads
    examples = [{"id": f"e{i}", "prompt": q, "response": a, "source": "test",
                 "labels": {"verbosity": min(3, len(a.split()) // 3), "unsafe_request": i % 2}}
                for i, (q, a) in enumerate(zip(QUESTIONS, ANSWERS))]
    paths = {"prompts": folder / "prompts.jsonl", "examples": folder / "examples.jsonl"}
    for key, rows in (("prompts", prompts), ("examples", examples)):
        paths[key].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return paths


@pytest.fixture(scope="session")
def rl_yaml(tmp_path_factory, tiny_causal_lm_dir, data_files) -> Path:
    """A tiny version of configs/demo/rl.yaml: 2 prompts x 2 generations x 8 tokens a step, TRL's own rollout."""
    path = tmp_path_factory.mktemp("rlcfg") / "rl.yaml"
    path.write_text(yaml.safe_dump({
        "policy": {"model": str(tiny_causal_lm_dir)},
        "data": {"prompts": str(data_files["prompts"]), "num_named": [1, 2]},
        "train": {"algorithm": "grpo", "rollout": "stock"},
        "trl": {"per_device_train_batch_size": 4, "num_generations": 2, "max_completion_length": 8,
                "learning_rate": 1e-2, "save_steps": 1, "logging_steps": 1, "use_cpu": True, "report_to": "none",
                "seed": 0, "disable_tqdm": True},
    }), encoding="utf-8")
    return path


@pytest.fixture
def baseline_config(tmp_path, tiny_rm, tiny_causal_lm_dir, rl_yaml, data_files):
    """``make(method_out, **overrides)`` -> a BaselineConfig on the tiny models, 2 RL / SFT steps per policy."""
    from moslim.baselines.config import BaselineConfig
    from moslim.config import load_config

    def make(out: str = "run", *extra: str) -> BaselineConfig:
        overrides = [f"out={tmp_path / out}", f"reward_model={tiny_rm}", f"policy={tiny_causal_lm_dir}",
                     f"rl.config={rl_yaml}", "rl.moslim_steps=4", "rl.policies=2",
                     f"ric.model={tiny_causal_lm_dir}", f"ric.data={data_files['examples']}",
                     f"ric.online_prompts={data_files['prompts']}", "ric.online_samples=4", "ric.max_new_tokens=8",
                     "ric.sft={per_device_train_batch_size: 2, max_length: 64, learning_rate: 0.01, "
                     "save_steps: 1, disable_tqdm: true}",
                     "eval.judge=null", "eval.objectives=null", f"eval.prompts={data_files['prompts']}",
                     "eval.num_prompts=2", "eval.bootstrap_resamples=20", "eval.generation.max_new_tokens=8",
                     "eval.generation.batch_size=8", "eval.min_judge_f1=0", *extra]
        return load_config(BaselineConfig, None, overrides)
    return make
