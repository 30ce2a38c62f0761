"""The OpenAI SDK talks to the server unchanged: preferences through extra_body, streaming, readable errors."""

from __future__ import annotations

import openai
import pytest


@pytest.fixture
def sdk(make_client):
    client = make_client(api_key="secret", default_max_tokens=6)
    return openai.OpenAI(base_url="http://testserver/v1", api_key="secret", http_client=client, max_retries=0)


QUESTION = [{"role": "user", "content": "what is the capital of france ?"}]


def test_sdk_completion_with_preferences_in_extra_body(sdk):
    completion = sdk.chat.completions.create(model="tiny", messages=QUESTION, n=2, seed=1,
                                             extra_body={"preferences": {"verbosity": 0, "harmlessness": 1}})
    assert len(completion.choices) == 2 and completion.choices[0].message.role == "assistant"
    assert completion.model_extra["moslim"]["preferences"] == {"harmlessness": 1, "verbosity": 0}
    assert set(completion.choices[0].model_extra["moslim"]["levels"]) == {"helpfulness", "verbosity", "harmlessness"}
    assert [m.id for m in sdk.models.list()] == ["tiny"]


def test_sdk_stream_yields_chunks_then_the_levels(sdk):
    stream = sdk.chat.completions.create(model="tiny", messages=QUESTION, stream=True, seed=2,
                                         extra_body={"preferences": {"verbosity": 2}})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    last = chunks[-1].choices[0]
    assert last.finish_reason in ("stop", "length") and "levels" in last.model_extra["moslim"]
    plain = sdk.chat.completions.create(model="tiny", messages=QUESTION, seed=2,
                                        extra_body={"preferences": {"verbosity": 2}})
    assert text.strip() == plain.choices[0].message.content


def test_sdk_errors_stay_readable(sdk, make_client):
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="tiny", messages=QUESTION, extra_body={"preferences": {"verbosity": 9}})
    assert "preferences.verbosity: level 9 for 'verbosity' is out of range 0-3" in str(err.value)
    assert err.value.param == "preferences"
    with pytest.raises(openai.NotFoundError, match="'gpt-4o' is not served here"):
        sdk.chat.completions.create(model="gpt-4o", messages=QUESTION)
    wrong = openai.OpenAI(base_url="http://testserver/v1", api_key="nope", http_client=sdk._client, max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="wrong API key"):
        wrong.models.list()
