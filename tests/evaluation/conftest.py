"""Fixtures for the evaluation tests: a tiny reward model and judge saved like `moslim rm train` saves them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

QUESTIONS = ["what is the capital city of france ?", "write a short answer about water .",
             "how can i help you ?", "list three good things ."]
LABELLING = {"verbosity": [{"signal": "words", "bins": "fixed", "edges": [2, 5, 10]}]}


def save_tiny_reward_model(backbone: Path, objectives, path: Path, seed: int) -> Path:
    from transformers import AutoTokenizer

    from moslim.reward.model import MultiHeadRewardModel, save_reward_model

    model = MultiHeadRewardModel.from_backbone(str(backbone), objectives, labelling=LABELLING, seed=seed)
    return save_reward_model(model, AutoTokenizer.from_pretrained(backbone), path)


@pytest.fixture(scope="session")
def tiny_reward_model_dir(tmp_path_factory, tiny_encoder_dir, objectives) -> Path:
    return save_tiny_reward_model(tiny_encoder_dir, objectives, tmp_path_factory.mktemp("rm") / "rm", seed=0)


@pytest.fixture(scope="session")
def tiny_judge_dir(tmp_path_factory, tiny_causal_lm_dir, objectives) -> Path:
    """The independent judge: another backbone (a decoder) with other head weights."""
    return save_tiny_reward_model(tiny_causal_lm_dir, objectives, tmp_path_factory.mktemp("judge") / "judge", seed=1)


def write_prompts(path: Path) -> Path:
    rows = [{"id": f"q{i}", "prompt": q, "source": "test", "tags": {"safety": "safe" if i % 2 else "unsafe"}}
            for i, q in enumerate(QUESTIONS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def eval_prompts(tmp_path) -> Path:
    return write_prompts(tmp_path / "prompts_eval.jsonl")


@pytest.fixture(scope="module")
def tiny_eval_run(tmp_path_factory, tiny_causal_lm_dir, tiny_reward_model_dir, tiny_judge_dir):
    """`moslim eval` once on tiny models (policy and base: the same tiny Llama); its output folder."""
    from moslim.cli import main

    tmp = tmp_path_factory.mktemp("eval_run")
    prompts = tmp / "prompts.jsonl"
    write_prompts(prompts)
    code = main(["eval", "--policy", str(tiny_causal_lm_dir), "--base-policy", str(tiny_causal_lm_dir),
                 "--reward-model", str(tiny_reward_model_dir), "--judge", str(tiny_judge_dir),
                 "--prompts", str(prompts), "--num-prompts", "3", "--num-samples", "2", "--out", str(tmp / "eval"),
                 "generation.max_new_tokens=12", "bootstrap.num_resamples=50", "min_judge_f1=0",
                 "grid.objective_pairs=[[helpfulness, verbosity]]",
                 "grid.pair_levels={helpfulness: [0, 2], verbosity: [0, 3]}"])
    assert code == 0
    return tmp / "eval"
