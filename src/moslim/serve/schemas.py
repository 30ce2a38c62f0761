"""Request bodies: OpenAI's chat completion (plus ``preferences``), moslim's score, OpenRLHF's get_reward.

Unknown fields are rejected (the error names the field and lists the supported ones), so a typo such
as ``"preference"`` fails loudly instead of being ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatRequest(_Strict):
    """OpenAI's chat completion request, the fields this server implements, plus ``preferences``."""

    model: str
    messages: list[Message] = Field(min_length=1)
    preferences: dict[str, Any] | str | None = Field(
        None, description="target levels, e.g. {'verbosity': 1}; unnamed objectives are unconstrained. "
        "Without it, preference lines in a system message are read; otherwise nothing is named.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    user: str | None = None
    # OpenAI fields this server does not implement, accepted at their neutral value only: some clients
    # send them on every request (``"stop": null``, ``"presence_penalty": 0``).
    stop: Any = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict | None = None

    @field_validator("stop", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "logit_bias")
    @classmethod
    def _neutral_only(cls, value, info: ValidationInfo):
        neutral = NEUTRAL[info.field_name]
        if value is not None and value not in neutral:
            raise ValueError(f"{info.field_name}={value!r} is not supported by this server (leave it out, or "
                             f"send {' / '.join(repr(v) for v in neutral)})")
        return value


NEUTRAL = {"stop": ([], ""), "presence_penalty": (0,), "frequency_penalty": (0,), "logprobs": (False,),
           "top_logprobs": (0,), "logit_bias": ({},)}


class ScoreItem(_Strict):
    prompt: str | list[Message]
    response: str
    preferences: dict[str, Any] | str | None = None


class ScoreRequest(_Strict):
    """moslim's scoring request: ``items`` of (prompt, response); ``preferences`` is the default for items
    without their own."""

    items: list[ScoreItem] = Field(min_length=1)
    preferences: dict[str, Any] | str | None = None

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "pairs" in data:
            raise ValueError("'pairs' was renamed to 'items' (2026-12-04: a pair is a preference pair, chosen and "
                             "rejected); send {\"items\": [{\"prompt\": ..., \"response\": ...}]}")
        return data


class RewardRequest(_Strict):
    """OpenRLHF's remote reward request (``--reward.remote_url``): ``query`` holds prompt + response as
    the policy's chat template rendered them; ``prompts`` the prompt alone; ``labels`` the dataset's
    label column (here: the preference, or a JSON object with ``preferences`` and ``question``)."""

    query: list[str] = Field(min_length=1)
    prompts: list[str] | None = None
    labels: list[Any] | None = None


# the fields an "unknown field" error lists as supported, per request body
FIELDS = {ChatRequest: [f for f in ChatRequest.model_fields if f not in NEUTRAL],
          ScoreRequest: list(ScoreRequest.model_fields), RewardRequest: list(RewardRequest.model_fields)}
