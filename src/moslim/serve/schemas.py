"""Request bodies: OpenAI's chat completion (plus ``preferences``), moslim's score, OpenRLHF's get_reward.

Unknown fields are rejected (the error names the field and lists the supported ones), so a typo such
as ``"preference"`` fails loudly instead of being ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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


class ScorePair(_Strict):
    prompt: str | list[Message]
    response: str
    preferences: dict[str, Any] | str | None = None


class ScoreRequest(_Strict):
    """moslim's scoring request: (prompt, response) pairs; ``preferences`` is the default for pairs
    without their own."""

    pairs: list[ScorePair] = Field(min_length=1)
    preferences: dict[str, Any] | str | None = None


class RewardRequest(_Strict):
    """OpenRLHF's remote reward request (``--reward.remote_url``): ``query`` holds prompt + response as
    the policy's chat template rendered them; ``prompts`` the prompt alone; ``labels`` the dataset's
    label column (here: the preference, or a JSON object with ``preferences`` and ``question``)."""

    query: list[str] = Field(min_length=1)
    prompts: list[str] | None = None
    labels: list[Any] | None = None


FIELDS = {ChatRequest: list(ChatRequest.model_fields), ScoreRequest: list(ScoreRequest.model_fields),
          RewardRequest: list(RewardRequest.model_fields)}
