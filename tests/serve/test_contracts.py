"""The reward in the shapes RL engines use: OpenRLHF's /get_reward and reward_func, verl's compute_score.

Field names follow their code: OpenRLHF's agent posts {"query", "prompts", "labels"} (query = prompt +
response as the policy's chat template rendered them, special tokens kept) and reads {"rewards",
"scores", "extra_logs"}; verl calls compute_score(data_source=, solution_str=, ground_truth=,
extra_info=) or, batched, compute_score(data_sources=, solution_strs=, ground_truths=, extra_infos=).
"""

from __future__ import annotations

import json

import pytest
import torch

from moslim.preferences import Preference, PromptTemplate, build_messages
from moslim.serve import openrlhf_reward, verl_reward

QUESTION = "how can i help the cat ?"
ANSWERS = ["safe good answer", "harm harmful"]


def rendered(engine, preference: Preference) -> str:
    """The prompt as OpenRLHF renders a MOSLIM row (--data.apply_chat_template): system + user turns."""
    messages = build_messages(QUESTION, preference, engine.objectives, engine.template)
    return engine.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def plain_rewards(client, answers, preferences) -> list[dict]:
    items = [{"prompt": QUESTION, "response": a, "preferences": p} for a, p in zip(answers, preferences)]
    return client.post("/v1/score", json={"items": items}).json()["results"]


def test_get_reward_reads_the_preference_from_the_system_prompt(client, engine):
    prompt = rendered(engine, Preference.of(verbosity=1))
    queries = [prompt + answer + engine.tokenizer.eos_token for answer in ANSWERS]
    body = client.post("/get_reward", json={"query": queries, "prompts": [prompt] * 2, "labels": [None, ""]}).json()
    assert set(body) == {"rewards", "scores", "extra_logs"}
    expected = plain_rewards(client, ANSWERS, [{"verbosity": 1}] * 2)
    assert body["rewards"] == pytest.approx([e["reward"] for e in expected], abs=1e-5)
    assert body["scores"] == pytest.approx([e["target_prob"] for e in expected], abs=1e-5)
    assert all(0 <= s <= 1 for s in body["scores"])
    assert set(body["extra_logs"]) == {f"{n}_level" for n in engine.objectives.names}
    assert all(len(v) == 2 for v in body["extra_logs"].values())


@pytest.mark.parametrize("with_prompts", [True, False])
def test_get_reward_reads_a_preference_that_closes_the_user_turn(client, engine, monkeypatch, with_prompts):
    monkeypatch.setattr(engine, "template", PromptTemplate(header="", line="({Description}.)", placement="user"))
    prompt = rendered(engine, Preference.of(verbosity=3, harmlessness=1))
    assert QUESTION + "\n\n(" in prompt and engine.system_message(Preference.of(verbosity=3)) in prompt
    queries = [prompt + answer + "<|im_end|>" for answer in ANSWERS]
    body = client.post("/get_reward", json={"query": queries, **({"prompts": [prompt] * 2} if with_prompts else {})})
    expected = plain_rewards(client, ANSWERS, [{"verbosity": 3, "harmlessness": 1}] * 2)  # the plain question
    assert body.json()["rewards"] == pytest.approx([e["reward"] for e in expected], abs=1e-5)


@pytest.mark.parametrize("label", ["verbosity=3", {"verbosity": 3}, json.dumps({"verbosity": 3}),
                                   json.dumps({"preferences": {"verbosity": 3}, "question": QUESTION})])
def test_get_reward_prefers_the_label_in_any_of_its_forms(client, engine, label):
    prompt = rendered(engine, Preference.of(verbosity=0))  # the label wins over the system message
    body = client.post("/get_reward", json={"query": [prompt + ANSWERS[0]], "prompts": [prompt],
                                            "labels": [label]}).json()
    assert body["rewards"] == pytest.approx([plain_rewards(client, ANSWERS[:1], [{"verbosity": 3}])[0]["reward"]],
                                            abs=1e-5)


def test_get_reward_without_prompts_finds_the_answer_through_the_chat_template(client, engine):
    prompt = rendered(engine, Preference.of(helpfulness=2))
    body = client.post("/get_reward", json={"query": [prompt + ANSWERS[1] + "<|im_end|>"]}).json()
    expected = plain_rewards(client, ANSWERS[1:], [{"helpfulness": 2}])[0]
    assert body["rewards"] == pytest.approx([expected["reward"]], abs=1e-5)


def test_get_reward_with_nothing_named_gives_zero(client, engine):
    prompt = rendered(engine, Preference())
    body = client.post("/get_reward", json={"query": [prompt + "yes"], "prompts": [prompt]}).json()
    assert body["rewards"] == [0.0] and body["scores"] == [0.0]


def test_get_reward_errors_name_the_row(client, engine):
    prompt = rendered(engine, Preference.of(verbosity=1))
    response = client.post("/get_reward", json={"query": [prompt + "a", prompt + "b"], "prompts": [prompt, prompt],
                                                "labels": ["", "verbosity=9"]})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("labels[1]: level 9 for 'verbosity' is out of range")
    response = client.post("/get_reward", json={"query": ["a", "b"], "prompts": ["a"]})
    assert response.status_code == 400 and "prompts: got 1 entries for 2 queries" in response.text


def test_openrlhf_reward_func_in_process_matches_the_server(client, engine, serve_rm_dir, monkeypatch):
    monkeypatch.setenv("MOSLIM_REWARD_MODEL", str(serve_rm_dir))
    prompt = rendered(engine, Preference.of(verbosity=2))
    queries = [prompt + a + "<|im_end|>" for a in ANSWERS]
    out = openrlhf_reward.reward_func(queries, [prompt] * 2, ["verbosity=2"] * 2)
    served = client.post("/get_reward", json={"query": queries, "prompts": [prompt] * 2,
                                              "labels": ["verbosity=2"] * 2}).json()
    assert isinstance(out["rewards"], torch.Tensor) and set(out) == {"rewards", "scores", "extra_logs"}
    assert out["rewards"].tolist() == pytest.approx(served["rewards"], abs=1e-5)


def test_verl_compute_score_one_and_batched_match_the_server(client, serve_rm_dir):
    infos = [{"question": QUESTION, "preference": {"verbosity": 1}}, {"question": QUESTION, "index": 3}]
    single = verl_reward.compute_score(data_source="moslim", solution_str=ANSWERS[0], ground_truth=None,
                                       extra_info=infos[0], model=str(serve_rm_dir))
    batch = verl_reward.compute_score_batch(data_sources=["moslim"] * 2, solution_strs=ANSWERS,
                                            ground_truths=[None, "helpfulness=2"], extra_infos=infos,
                                            model=str(serve_rm_dir))
    expected = plain_rewards(client, ANSWERS, [{"verbosity": 1}, {"helpfulness": 2}])
    assert single["score"] == pytest.approx(expected[0]["reward"], abs=1e-5)
    assert [b["score"] for b in batch] == pytest.approx([e["reward"] for e in expected], abs=1e-5)
    assert set(single) == {"score", "helpfulness_level", "verbosity_level", "harmlessness_level"}


def test_verl_compute_score_says_what_it_needs(serve_rm_dir, monkeypatch):
    monkeypatch.delenv("MOSLIM_REWARD_MODEL", raising=False)
    monkeypatch.delenv("MOSLIM_REWARD_URL", raising=False)
    with pytest.raises(ValueError, match="reward_kwargs.model"):
        verl_reward.compute_score("moslim", "answer", None, {"question": QUESTION})
    with pytest.raises(ValueError, match=r"extra_info\[0\]: expected 'question'"):
        verl_reward.compute_score("moslim", "answer", None, {"preference": "verbosity=1"}, model=str(serve_rm_dir))
