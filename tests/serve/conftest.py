"""A tiny policy (random 2-layer Llama) and reward model (random heads on a 2-layer BERT) behind the app."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from moslim.serve.app import ServeSettings, create_app
from moslim.serve.engine import load_engine


@pytest.fixture(scope="session")
def serve_rm_dir(tmp_path_factory, tiny_encoder_dir, tiny_tokenizer, objectives) -> Path:
    from moslim.reward.model import MultiHeadRewardModel, save_reward_model

    model = MultiHeadRewardModel.from_backbone(tiny_encoder_dir, objectives, seed=0)
    return save_reward_model(model, tiny_tokenizer, tmp_path_factory.mktemp("serve-rm") / "rm")


@pytest.fixture(scope="session")
def engine(tiny_causal_lm_dir, serve_rm_dir):
    """The policy folder has no objectives.yaml, so the reward model's objectives are used."""
    return load_engine(str(tiny_causal_lm_dir), str(serve_rm_dir), device="cpu", model_name="tiny", seed=0)


@pytest.fixture
def make_client(engine):
    """A TestClient over a fresh app (fresh batchers) with the given settings; closed after the test."""
    clients = []

    def make(**settings) -> TestClient:
        client = TestClient(create_app(engine, ServeSettings(**settings)))
        client.__enter__()  # runs the lifespan: starts the batchers
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client(default_max_tokens=8, max_tokens=12)
