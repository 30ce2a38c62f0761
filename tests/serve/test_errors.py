"""Bad input gets a 4xx naming the field, what was expected and what came; the server keeps serving."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

ASK = {"model": "tiny", "messages": [{"role": "user", "content": "what is the capital of france ?"}]}
KEY = {"Authorization": "Bearer secret"}


@pytest.fixture
def guarded(make_client):
    return make_client(api_key="secret", max_body_bytes=2_000, default_max_tokens=4)


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) >= {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize(("change", "param", "words"), [
    ({"preferences": {"verbosty": 1}}, "preferences", ["unknown objective 'verbosty'", "valid objectives",
                                                       "verbosity"]),
    ({"preferences": {"verbosity": 7}}, "preferences", ["preferences.verbosity", "level 7", "out of range 0-3"]),
    ({"preferences": {"verbosity": "high"}}, "preferences", ["preferences.verbosity", "'high'", "not an integer"]),
    ({"preferences": "verbosity=9"}, "preferences", ["level 9", "out of range 0-3"]),
    ({"stop": ["\n"]}, "stop", ["stop=['\\n'] is not supported by this server", "leave it out"]),
    ({"presence_penalty": 0.5}, "presence_penalty", ["presence_penalty=0.5 is not supported"]),
    ({"tools": []}, "tools", ["unknown field 'tools'", "supported fields", "preferences"]),
    ({"preference": {"verbosity": 1}}, "preference", ["unknown field 'preference'"]),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", ["'user'", "(got 'robot')"]),
    ({"messages": []}, "messages", ["messages", "at least 1"]),
    ({"temperature": 3}, "temperature", ["less than or equal to 2", "(got 3)"]),
    ({"n": 50}, "n", ["at most 8", "got 50"]),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages", ["last message must be the user's"]),
])
def test_bad_chat_requests_get_400_naming_the_field(guarded, change, param, words):
    response = guarded.post("/v1/chat/completions", json={**ASK, **change}, headers=KEY)
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == param and error["type"] == "invalid_request_error"
    for word in words:
        assert word in error["message"]


def test_fields_some_clients_always_send_are_accepted_at_their_neutral_value(guarded):
    neutral = {"stop": None, "presence_penalty": 0, "frequency_penalty": 0.0, "logprobs": False, "logit_bias": {},
               "user": "someone"}
    assert guarded.post("/v1/chat/completions", json={**ASK, **neutral}, headers=KEY).status_code == 200


def test_unknown_model_is_404_naming_the_served_one(guarded):
    response = guarded.post("/v1/chat/completions", json={**ASK, "model": "gpt-4o"}, headers=KEY)
    assert response.status_code == 404
    assert "'gpt-4o' is not served here" in error_of(response)["message"] and "'tiny'" in response.text


def test_malformed_json_and_non_json_bodies_get_400(guarded):
    response = guarded.post("/v1/chat/completions", content=b'{"model": "tiny", "messages": [',
                            headers={**KEY, "Content-Type": "application/json"})
    assert response.status_code == 400 and "not valid JSON at character 31" in error_of(response)["message"]
    response = guarded.post("/v1/chat/completions", content=b"model=tiny",
                            headers={**KEY, "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400 and "Content-Type: application/json" in error_of(response)["message"]
    response = guarded.post("/v1/chat/completions", json=[1, 2], headers=KEY)
    assert response.status_code == 400 and "must be a JSON object, got list" in error_of(response)["message"]


def test_oversized_bodies_get_413_with_or_without_a_length(guarded):
    big = {**ASK, "messages": [{"role": "user", "content": "x" * 5_000}]}
    response = guarded.post("/v1/chat/completions", json=big, headers=KEY)
    assert response.status_code == 413 and "at most 2000" in error_of(response)["message"]
    chunked = iter([b'{"model": "tiny", "messages": [{"role": "user", "content": "', b"x" * 3_000, b'"}]}'])
    response = guarded.post("/v1/chat/completions", content=chunked,
                            headers={**KEY, "Content-Type": "application/json"})
    assert response.status_code == 413


def test_missing_or_wrong_api_key_gets_401_and_the_page_needs_none(guarded):
    for headers in ({}, {"Authorization": "Bearer nope"}):
        for path in ("/v1/models", "/v1/objectives"):
            response = guarded.get(path, headers=headers)
            assert response.status_code == 401 and error_of(response)["code"] == "invalid_api_key"
            assert "Authorization: Bearer" in error_of(response)["message"]
        assert guarded.post("/get_reward", json={"query": ["x"]}, headers=headers).status_code == 401
    assert guarded.get("/").status_code == 200 and guarded.get("/static/app.js").status_code == 200
    assert guarded.get("/v1/models", headers=KEY).status_code == 200


def test_score_errors_name_the_item(guarded):
    items = [{"prompt": "a", "response": "b"}, {"prompt": "a", "response": "b", "preferences": {"helpfulness": 3}}]
    response = guarded.post("/v1/score", json={"items": items}, headers=KEY)
    assert response.status_code == 400 and error_of(response)["param"] == "items[1].preferences"
    assert "level 3 for 'helpfulness' is out of range 0-2" in error_of(response)["message"]
    response = guarded.post("/v1/score", json={"items": [{"prompt": "a"}]}, headers=KEY)
    assert response.status_code == 400
    assert error_of(response)["message"] == "items[0].response: required field is missing"


def test_score_refuses_the_old_pairs_field_with_its_new_name(guarded):
    response = guarded.post("/v1/score", json={"pairs": [{"prompt": "a", "response": "b"}]}, headers=KEY)
    assert response.status_code == 400
    assert error_of(response)["message"].startswith("body: 'pairs' was renamed to 'items'")


def test_server_keeps_serving_after_bad_requests(guarded):
    for body in ({"preferences": {"x": 1}}, {"stop": "."}, {"n": 0}):
        assert guarded.post("/v1/chat/completions", json={**ASK, **body}, headers=KEY).status_code == 400
    response = guarded.post("/v1/chat/completions", json=ASK, headers=KEY)
    assert response.status_code == 200 and response.json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_a_failing_batch_answers_500_and_the_next_request_succeeds(make_client, engine, monkeypatch):
    original = engine.generate
    calls = []

    def fails_once(jobs):
        calls.append(len(jobs))
        if len(calls) == 1:
            raise RuntimeError("out of memory (simulated)")
        return original(jobs)

    monkeypatch.setattr(engine, "generate", fails_once)
    client = make_client(default_max_tokens=4)
    response = client.post("/v1/chat/completions", json=ASK)
    assert response.status_code == 500 and "out of memory (simulated)" in error_of(response)["message"]
    assert client.post("/v1/chat/completions", json=ASK).status_code == 200


def test_a_full_queue_answers_503_with_retry_after(make_client, engine, monkeypatch):
    original, entered, release = engine.generate, threading.Event(), threading.Event()

    def blocking(jobs):
        entered.set()
        release.wait(30)
        return original(jobs)

    monkeypatch.setattr(engine, "generate", blocking)
    client = make_client(max_queue=1, batch_window_ms=0, default_max_tokens=4)
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(client.post, "/v1/chat/completions", json=ASK)  # runs, blocked in the model thread
        assert entered.wait(30)
        waiting = pool.submit(client.post, "/v1/chat/completions", json=ASK)  # fills the queue
        deadline = time.monotonic() + 30
        while client.get("/health").json()["generation"]["waiting"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = client.post("/v1/chat/completions", json=ASK)
        release.set()
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "queue is full" in error_of(refused)["message"]
        assert running.result().status_code == 200 and waiting.result().status_code == 200
    assert client.post("/v1/chat/completions", json=ASK).status_code == 200
