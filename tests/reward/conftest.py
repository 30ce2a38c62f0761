"""Tiny labelled data and a tiny training config for the reward-model tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from moslim.reward.config import DataSection, ModelSection, RewardTrainConfig, TrainSection

ASSETS = Path(__file__).parents[1] / "assets"
QUESTIONS = ["what is the capital of france ?", "how can i help the cat ?", "why is water good ?",
             "write a list of one two three", "explain the dog", "who is the user ?"]


def make_examples(n: int, seed: int) -> list[dict]:
    """Labels follow the text, so a model can learn them: verbosity = length band, harmlessness = no 'harm'."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        verbosity = rng.randrange(4)
        harmful = rng.random() < 0.3
        words = ["harm harmful"] if harmful else ["safe good answer"]
        words += ["the answer is paris ."] * (1 + 2 * verbosity)
        labels = {"verbosity": verbosity, "harmlessness": 0 if harmful else 1}
        if rng.random() < 0.7:  # helpfulness labelled on some rows only
            labels["helpfulness"] = 0 if harmful else min(2, verbosity)
        prompt = rng.choice(QUESTIONS)
        if i % 3 == 0:  # some prompts are chats with a system turn the reward model must ignore
            prompt = [{"role": "system", "content": "level verbosity : four"}, {"role": "user", "content": prompt}]
        rows.append({"id": f"ex{i}", "prompt": prompt, "response": " ".join(words), "labels": labels,
                     "source": "test"})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def rm_data(tmp_path) -> dict[str, Path]:
    pairs = [{"id": f"p{i}", "prompt": "how can i help the cat ?", "chosen": "safe good answer",
              "rejected": "harm harmful", "objective": "harmlessness", "source": "test"} for i in range(4)]
    return {"train": write_jsonl(tmp_path / "train.jsonl", make_examples(24, 0)),
            "eval": write_jsonl(tmp_path / "eval.jsonl", make_examples(12, 1)),
            "pairs": write_jsonl(tmp_path / "pairs.jsonl", pairs),
            "objectives": ASSETS / "objectives.yaml"}


@pytest.fixture
def tiny_rm_config(tmp_path, rm_data, tiny_causal_lm_dir) -> RewardTrainConfig:
    return RewardTrainConfig(
        model=ModelSection(backbone=str(tiny_causal_lm_dir)),
        data=DataSection(objectives=str(rm_data["objectives"]), train=str(rm_data["train"]),
                         eval=str(rm_data["eval"]), pairs=str(rm_data["pairs"]), max_length=64),
        train=TrainSection(max_steps=6, batch_size=4, learning_rate=1e-3, head_learning_rate=1e-2, save_every=2,
                           log_every=2, progress=False),
        output_dir=str(tmp_path / "rm"),
    )
