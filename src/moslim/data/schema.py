"""The records moslim reads and writes.

- :class:`Example`: a prompt, a response, and levels for any subset of the objectives (a missing
  label masks that head). JSONL form: ``{"id", "prompt", "response", "labels": {objective: level},
  "source"}``; ``prompt`` is plain text or a list of chat messages.
- :class:`PreferencePair`: a prompt with a chosen and a rejected response, and the objective the
  pair speaks to (for pairwise accuracy of a head). JSONL: ``{"id", "prompt", "chosen", "rejected",
  "objective", "source"}``.
- :class:`PromptRecord`: an RL / evaluation prompt. JSONL: ``{"id", "prompt", "source", "tags"}``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Prompt = str | list[dict[str, str]]


@dataclass
class Example:
    id: str
    prompt: Prompt
    response: str
    labels: dict[str, int] = field(default_factory=dict)
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PreferencePair:
    id: str
    prompt: Prompt
    chosen: str
    rejected: str
    objective: str
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PromptRecord:
    id: str
    prompt: Prompt
    source: str = ""
    tags: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def prompt_text(prompt: Prompt) -> str:
    """The prompt as plain text: a chat's turns joined, each user / assistant turn on its own lines."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(
        m["content"] if m.get("role") == "user" else f"{m.get('role', 'user').capitalize()}: {m['content']}"
        for m in prompt if m.get("role") != "system"
    )
