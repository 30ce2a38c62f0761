"""Fixtures for the policy tests: prompt files, a stand-in scorer, tiny RL configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from moslim.config import from_dict
from moslim.objectives import ObjectiveSet
from moslim.policy.train import RLConfig

QUESTIONS = [
    "what is the capital city of france ?",
    "explain why the cat is a good dog .",
    "write a short answer about water .",
    "list three good things .",
    "how can i help you ?",
    "who is the capital of water ?",
]


class LengthScorer:
    """A stand-in reward model: the verbosity head puts 0.9 on level ``len(answer) % levels`` (so the
    random tiny policy's completions in one group get different rewards), other heads are uniform.

    It isolates the reward callable and the trainer from the reward model (issue 4) with probs whose
    values the tests can compute by hand.
    """

    def __init__(self, objectives: ObjectiveSet):
        self.objectives = objectives
        self.calls = 0

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        self.calls += 1
        k, c = len(self.objectives), self.objectives.max_classes
        probs = torch.zeros(len(responses), k, c)
        for i, obj in enumerate(self.objectives):
            probs[:, i, : obj.num_levels] = 1.0 / obj.num_levels
        if "verbosity" in self.objectives:
            v = self.objectives.index("verbosity")
            n = self.objectives["verbosity"].num_levels
            for b, text in enumerate(responses):
                level = len(text) % n
                probs[b, v, :n] = 0.1 / (n - 1)
                probs[b, v, level] = 0.9
        return probs


@pytest.fixture
def length_scorer(objectives):
    return LengthScorer(objectives)


@pytest.fixture
def prompts_file(tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    rows = [{"id": f"q{i}", "prompt": q, "source": "test", "tags": {}} for i, q in enumerate(QUESTIONS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_rm_dir(tmp_path_factory, tiny_encoder_dir, tiny_tokenizer, objectives) -> Path:
    """A real multi-head reward model (random heads) on the tiny BERT, saved like `moslim rm train` does."""
    from moslim.reward.model import MultiHeadRewardModel, save_reward_model

    model = MultiHeadRewardModel.from_backbone(tiny_encoder_dir, objectives, seed=0)
    return save_reward_model(model, tiny_tokenizer, tmp_path_factory.mktemp("rm") / "rm")


@pytest.fixture(scope="session")
def tiny_scorer(tiny_rm_dir):
    from moslim.reward.scorer import RewardScorer

    return RewardScorer.from_pretrained(tiny_rm_dir, device="cpu")


def tiny_config(policy_dir: Path, rm_dir: Path, prompts: Path, output_dir: Path, algorithm: str = "grpo",
                trl: dict | None = None) -> RLConfig:
    """2 steps of 2 prompts x 2 generations x 8 tokens on a tiny Llama, checkpoint every step."""
    options = {"per_device_train_batch_size": 4, "num_generations": 2, "max_completion_length": 8,
               "max_steps": 2, "learning_rate": 1e-2, "save_steps": 1, "logging_steps": 1, "use_cpu": True,
               "report_to": "none", "seed": 0, "disable_tqdm": True, **(trl or {})}
    return from_dict(RLConfig, {
        "policy": {"model": str(policy_dir)},
        "reward": {"model": str(rm_dir)},
        "data": {"prompts": str(prompts), "num_named": [1, 3]},
        "train": {"algorithm": algorithm, "rollout": "stock", "output_dir": str(output_dir)},
        "trl": options,
    })


@pytest.fixture
def make_config():
    """``tiny_config`` as a fixture, so test modules need no import from this folder."""
    return tiny_config
