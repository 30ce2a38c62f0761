"""`moslim serve` end to end up to uvicorn (replaced by a stand-in that serves the app in-process), and
servers with only a reward model or only a policy."""

from __future__ import annotations

import pytest
import uvicorn
from fastapi.testclient import TestClient

from moslim.cli import main
from moslim.serve.app import ServeSettings, create_app
from moslim.serve.engine import load_engine


def test_serve_command_builds_the_app_from_its_flags(tiny_causal_lm_dir, serve_rm_dir, monkeypatch, capsys):
    launched = {}

    def fake_run(app, host, port, **kwargs):
        launched.update(host=host, port=port)
        with TestClient(app) as client:
            headers = {"Authorization": "Bearer k"}
            launched["models"] = client.get("/v1/models", headers=headers).json()
            launched["chat"] = client.post("/v1/chat/completions", headers=headers, json={
                "model": "tiny-cli", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50,
                "preferences": {"verbosity": 1}}).json()
            launched["health"] = client.get("/health").json()

    monkeypatch.setattr(uvicorn, "run", fake_run)
    assert main(["serve", "--policy", str(tiny_causal_lm_dir), "--reward-model", str(serve_rm_dir), "--port", "8123",
                 "--api-key", "k", "--model-name", "tiny-cli", "--max-tokens", "5", "--max-batch", "1",
                 "--device", "cpu"]) == 0
    assert launched["host"] == "127.0.0.1" and launched["port"] == 8123  # this machine only, by default
    assert [m["id"] for m in launched["models"]["data"]] == ["tiny-cli"]
    assert launched["chat"]["usage"]["completion_tokens"] <= 5
    assert "levels" in launched["chat"]["choices"][0]["moslim"]
    assert "http://127.0.0.1:8123/" in capsys.readouterr().err


def test_serve_needs_a_policy_or_a_reward_model(capsys):
    assert main(["serve"]) == 2
    assert "give a policy (--policy), a reward model (--reward-model) or both" in capsys.readouterr().err


def test_a_base_policy_without_objectives_or_reward_model_is_refused(tiny_causal_lm_dir):
    with pytest.raises(ValueError, match="pass --objectives or --reward-model"):
        load_engine(str(tiny_causal_lm_dir), device="cpu")


def test_reward_model_only_server_scores_and_says_it_has_no_policy(serve_rm_dir):
    engine = load_engine(reward_model=str(serve_rm_dir), device="cpu")
    with TestClient(create_app(engine, ServeSettings())) as client:
        assert client.get("/v1/models").json()["data"] == []
        response = client.post("/v1/chat/completions", json={"model": "x", "messages": [{"role": "user",
                                                                                        "content": "hi"}]})
        assert response.status_code == 400 and "no policy" in response.json()["error"]["message"]
        items = [{"prompt": "hi", "response": "yes", "preferences": {"harmlessness": 1}}]
        assert client.post("/v1/score", json={"items": items}).json()["results"][0]["reward"] is not None


def test_policy_only_server_answers_without_levels_and_refuses_scoring(tiny_causal_lm_dir, objectives, tmp_path):
    path = tmp_path / "objectives.yaml"
    objectives.to_yaml(path)
    engine = load_engine(str(tiny_causal_lm_dir), objectives=path, device="cpu", model_name="p")
    with TestClient(create_app(engine, ServeSettings(default_max_tokens=3))) as client:
        body = client.post("/v1/chat/completions", json={"model": "p", "messages": [{"role": "user",
                                                                                     "content": "hi"}]}).json()
        assert "moslim" not in body["choices"][0]
        response = client.post("/v1/score", json={"items": [{"prompt": "hi", "response": "yes"}]})
        assert response.status_code == 400 and "--reward-model" in response.json()["error"]["message"]
