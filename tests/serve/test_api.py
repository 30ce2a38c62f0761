"""The OpenAI-compatible API with a tiny policy and reward model: answers, preferences, streaming, scores."""

from __future__ import annotations

import json

import pytest

from moslim.preferences import Preference

ASK = {"model": "tiny", "messages": [{"role": "user", "content": "what is the capital of france ?"}]}


def sse_chunks(response) -> list:
    """The data payloads of a server-sent event stream, '[DONE]' included as a string."""
    chunks = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line[len("data: "):]
            chunks.append(payload if payload == "[DONE]" else json.loads(payload))
    return chunks


def test_chat_completion_has_openai_shape_and_the_reward_models_levels(client, engine):
    body = client.post("/v1/chat/completions", json={**ASK, "preferences": {"verbosity": 1}, "seed": 3}).json()
    assert body["object"] == "chat.completion" and body["model"] == "tiny" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    assert set(choice["moslim"]["levels"]) == set(engine.objectives.names)
    assert len(choice["moslim"]["probs"]["verbosity"]) == engine.objectives["verbosity"].num_levels
    assert choice["moslim"]["reward"] is not None  # a preference was given: the mapped reward
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert body["moslim"]["preferences"] == {"verbosity": 1}


def test_preference_is_rendered_into_the_system_message_as_in_training(client, engine):
    from moslim.policy.generate import render_prompts

    body = client.post("/v1/chat/completions", json={**ASK, "preferences": {"verbosity": 1, "helpfulness": 2}}).json()
    expected = engine.template.render(Preference.of(verbosity=1, helpfulness=2), engine.objectives)
    assert body["moslim"]["system_message"] == expected
    turns = [{"role": "user", "content": ASK["messages"][0]["content"]}]
    training = render_prompts(engine.tokenizer, [turns], [Preference.of(verbosity=1, helpfulness=2)],
                              engine.objectives, engine.template)[0]
    assert engine.prompt_ids(turns, Preference.of(verbosity=1, helpfulness=2)) == \
        engine.tokenizer(training, add_special_tokens=False)["input_ids"]


def test_a_user_placed_preference_closes_the_last_user_turn_as_in_training(client, engine, monkeypatch):
    from moslim.policy.generate import render_prompts
    from moslim.preferences import PromptTemplate

    monkeypatch.setattr(engine, "template", PromptTemplate(header="", line="({Description}.)", empty="Hi.",
                                                           placement="user"))
    pref = Preference.of(verbosity=1)
    body = client.post("/v1/chat/completions", json={**ASK, "preferences": {"verbosity": 1}}).json()
    line = engine.template.render(pref, engine.objectives)
    assert body["moslim"]["system_message"] == "Hi." and body["moslim"]["user_suffix"] == line
    turns = [{"role": "user", "content": ASK["messages"][0]["content"]}]
    training = render_prompts(engine.tokenizer, [turns], [pref], engine.objectives, engine.template)[0]
    assert ASK["messages"][0]["content"] + "\n\n" + line in training
    assert engine.prompt_ids(turns, pref) == engine.tokenizer(training, add_special_tokens=False)["input_ids"]


def test_preference_lines_in_a_system_message_are_read_when_no_preferences_field(client, engine):
    system = engine.template.render(Preference.of(harmlessness=1), engine.objectives)
    messages = [{"role": "system", "content": system}, ASK["messages"][0]]
    body = client.post("/v1/chat/completions", json={**ASK, "messages": messages}).json()
    assert body["moslim"]["preferences"] == {"harmlessness": 1}


def test_same_seed_gives_the_same_answers_and_n_gives_n_choices(client):
    request = {**ASK, "n": 3, "seed": 11, "temperature": 1.0, "max_tokens": 6}
    first = client.post("/v1/chat/completions", json=request).json()
    second = client.post("/v1/chat/completions", json=request).json()
    assert [c["index"] for c in first["choices"]] == [0, 1, 2]
    assert [c["message"] for c in first["choices"]] == [c["message"] for c in second["choices"]]


def test_max_tokens_is_capped_by_the_server(client):
    body = client.post("/v1/chat/completions", json={**ASK, "max_tokens": 500, "temperature": 0}).json()
    assert body["usage"]["completion_tokens"] <= 12  # the client fixture's cap


def test_streamed_answer_equals_the_plain_answer_for_the_same_seed(client):
    request = {**ASK, "preferences": {"verbosity": 2}, "seed": 5, "n": 2, "max_tokens": 10}
    plain = client.post("/v1/chat/completions", json=request).json()
    with client.stream("POST", "/v1/chat/completions",
                       json={**request, "stream": True, "stream_options": {"include_usage": True}}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = sse_chunks(response)
    assert chunks[-1] == "[DONE]"
    events = chunks[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in events)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    texts = {0: "", 1: ""}
    finished = {}
    for chunk in events:
        for choice in chunk["choices"]:
            texts[choice["index"]] += choice["delta"].get("content", "")
            if choice["finish_reason"]:
                finished[choice["index"]] = choice
    for i, choice in enumerate(plain["choices"]):
        assert texts[i].strip() == choice["message"]["content"]
        assert finished[i]["finish_reason"] == choice["finish_reason"]
        assert finished[i]["moslim"]["levels"] == choice["moslim"]["levels"]
    assert events[-1]["choices"] == [] and events[-1]["usage"] == plain["usage"]


def test_models_and_objectives_describe_what_is_served(client, engine):
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny"]
    objectives = client.get("/v1/objectives").json()
    assert [o["name"] for o in objectives["objectives"]] == engine.objectives.names
    assert objectives["objectives"][1]["levels"] == list(engine.objectives["verbosity"].level_descriptions)


def test_score_gives_levels_probabilities_and_the_mapped_reward_only_with_a_preference(client, engine):
    from moslim.preferences import to_tensors
    from moslim.reward.mapping import map_rewards

    items = [{"prompt": "how can i help the cat ?", "response": "safe good answer", "preferences": {"verbosity": 0}},
             {"prompt": [{"role": "user", "content": "why is water good ?"}], "response": "harm harmful"}]
    body = client.post("/v1/score", json={"items": items}).json()
    first, second = body["results"]
    assert body["objectives"] == engine.objectives.names and body["method"] == "zscore"
    probs = engine.scorer.score(["how can i help the cat ?"], ["safe good answer"])
    targets, mask = to_tensors([Preference.of(verbosity=0)], engine.objectives)
    expected = map_rewards(probs, targets, mask, engine.objectives.num_levels)[0]
    assert first["reward"] == pytest.approx(float(expected), abs=1e-5)
    assert first["probs"]["verbosity"] == pytest.approx(probs[0, 1, :4].tolist(), abs=1e-4)
    assert second["reward"] is None and second["target_prob"] is None
    assert sum(second["probs"]["harmlessness"]) == pytest.approx(1.0, abs=1e-3)


def test_requests_that_arrive_together_share_one_batch(make_client):
    import concurrent.futures

    client = make_client(batch_window_ms=400, max_batch_rows=16, default_max_tokens=4)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(lambda i: client.post("/v1/chat/completions", json={
            **ASK, "preferences": {"verbosity": i % 4}}).json(), range(4)))
    assert all(len(b["choices"]) == 1 for b in bodies)
    health = client.get("/health").json()["generation"]
    assert health["rows"] == 4 and health["batches"] == 1 and health["largest"] == 4
