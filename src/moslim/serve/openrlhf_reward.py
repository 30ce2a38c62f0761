"""The MOSLIM reward in OpenRLHF's remote-reward contract.

OpenRLHF (``--reward.remote_url http://HOST:PORT/get_reward``) POSTs ``{"query": [...], "prompts":
[...], "labels": [...]}``: ``query`` is prompt + response as the policy's chat template rendered them
(special tokens kept), ``prompts`` the rendered prompt, ``labels`` the dataset's label column. It reads
``{"rewards": [...], "scores": [...], "extra_logs": {...}}``: rewards for the advantages, scores in
0-1 for its dynamic filtering (here: the reward model's mean probability of the requested levels),
extra_logs one value per sample per key (here: each objective's expected level).

The preference comes from the label (``"verbosity=1"``, ``{"verbosity": 1}``, or ``{"preferences":
..., "question": ...}`` as JSON) or, when the label is empty, from the system message inside the prompt.
The question the reward model reads is the label's ``question`` or the user turn cut out of the prompt
by inverting the chat template (a single-turn template render; otherwise the prompt without its
system message). ``--reward.remote_url /path/to/this/file.py`` runs ``reward_func`` in OpenRLHF's process.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from moslim.preferences import Preference
from moslim.serve.engine import Engine, read_preference

_SYSTEM, _USER = "\u2063MOSLIM_SYSTEM\u2063", "\u2063MOSLIM_USER\u2063"  # markers no real prompt contains
LABEL_KEYS = {"preferences", "preference", "question"}


class QuerySplitter:
    """Splits OpenRLHF's rendered texts into (question, response, preference) for the reward model."""

    def __init__(self, engine: Engine):
        self.engine = engine
        candidates = [engine.tokenizer, getattr(engine.scorer, "tokenizer", None)]
        tokenizer = next((t for t in candidates if t is not None and getattr(t, "chat_template", None)), None)
        self.pattern = _chat_pattern(tokenizer) if tokenizer is not None else None
        specials = set()
        for t in candidates:
            if t is not None:
                specials |= {s for s in t.all_special_tokens if s}
        self.specials = sorted(specials, key=len, reverse=True)

    def split(self, query: str, prompt: str | None, label: Any, where: str) -> tuple[str, str, Preference]:
        source = prompt if prompt else query
        match = self.pattern.search(source) if self.pattern is not None else None
        if prompt and query.startswith(prompt):
            response = query[len(prompt):]
        elif (in_query := self.pattern.search(query) if self.pattern is not None else None) is not None:
            response = query[in_query.end():]  # the answer starts after the template's assistant header
        else:
            raise ValueError(f"{where}: cannot tell where the response starts in the query; send 'prompts' "
                             "(the rendered prompt each query begins with)")
        preference, question = self._label(label, where)
        template, objectives = self.engine.template, self.engine.objectives
        in_user = template.placement == "user"  # the preference closes the user's turn, not the system message
        written = (match["user" if in_user else "system"] if match is not None else source)
        if preference is None:
            try:
                preference = template.parse(written, objectives)
            except ValueError as err:
                raise ValueError(f"{where}: the {'user turn' if in_user else 'system message'} asks for "
                                 f"{err}") from None
        if question is None:
            question = match["user"] if match is not None else \
                source.replace(self.engine.system_message(preference), "")
            question = template.strip(self._strip_specials(question), preference, objectives)
        return self._strip_specials(question), self._strip_specials(response), preference

    def _label(self, label: Any, where: str) -> tuple[Preference | None, str | None]:
        where = where.replace("query", "labels")
        if isinstance(label, str) and label.strip().startswith("{"):
            try:
                label = json.loads(label)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: label looks like JSON but is not: {err}") from None
        if label is None or label == "":
            return None, None
        if isinstance(label, dict) and label and set(label) <= LABEL_KEYS:
            value = label.get("preferences", label.get("preference"))
            question = label.get("question")
            if question is not None and not isinstance(question, str):
                raise ValueError(f"{where}.question: expected a string, got {type(question).__name__}")
            return (read_preference(value, self.engine.objectives, where) if value is not None else None), question
        return read_preference(label, self.engine.objectives, where), None

    def _strip_specials(self, text: str) -> str:
        text = text.strip()
        changed = True
        while changed:
            changed = False
            for special in self.specials:
                if text.endswith(special):
                    text, changed = text[: -len(special)].rstrip(), True
                if text.startswith(special):
                    text, changed = text[len(special):].lstrip(), True
        return text


def _chat_pattern(tokenizer) -> re.Pattern | None:
    """A regex matching a single-turn prompt as ``tokenizer``'s chat template renders it, with groups
    ``system`` and ``user``; it ends where the assistant's answer begins. None if the template has no
    such shape (it drops the system turn, adds dates, ...)."""
    messages = [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": _USER}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - any template error just means: no inversion
        return None
    if not isinstance(text, str) or text.count(_SYSTEM) != 1 or text.count(_USER) != 1 or \
            text.index(_SYSTEM) > text.index(_USER):
        return None
    pattern = re.escape(text).replace(re.escape(_SYSTEM), "(?P<system>.*?)", 1)
    return re.compile(pattern.replace(re.escape(_USER), "(?P<user>.*?)", 1), re.S)


def get_reward(engine: Engine, splitter: QuerySplitter, queries: Sequence[str], prompts: Sequence[str] | None,
               labels: Sequence[Any] | None) -> dict:
    """OpenRLHF's response for one request (one reward-model pass over its rows)."""
    rows = split_rows(splitter, queries, prompts, labels)
    return rewards_payload(engine, engine.score(*zip(*rows)) if rows else [])


def split_rows(splitter: QuerySplitter, queries: Sequence[str], prompts: Sequence[str] | None,
               labels: Sequence[Any] | None) -> list[tuple[str, str, Preference]]:
    """(question, response, preference) per query; ValueError naming the row for bad input."""
    for name, column in (("prompts", prompts), ("labels", labels)):
        if column is not None and len(column) != len(queries):
            raise ValueError(f"{name}: got {len(column)} entries for {len(queries)} queries; expected one per query")
    return [splitter.split(query, prompts[i] if prompts else None, labels[i] if labels else None, f"query[{i}]")
            for i, query in enumerate(queries)]


def rewards_payload(engine: Engine, scored: list[dict]) -> dict:
    """``{"rewards", "scores", "extra_logs"}`` from ``Engine.score`` results; nothing named -> 0 and 0."""
    return {
        "rewards": [s["reward"] if s["reward"] is not None else 0.0 for s in scored],
        "scores": [s["target_prob"] if s["target_prob"] is not None else 0.0 for s in scored],
        "extra_logs": {f"{name}_level": [s["expected_levels"][name] for s in scored]
                       for name in engine.objectives.names},
    }


@lru_cache(maxsize=2)
def _local_engine(model: str) -> tuple[Engine, QuerySplitter]:
    from moslim.serve.engine import load_engine

    engine = load_engine(reward_model=model)
    return engine, QuerySplitter(engine)


def reward_func(queries: list[str], prompts: list[str], labels: list, **kwargs) -> dict:
    """OpenRLHF's in-process form (``--reward.remote_url /path/to/openrlhf_reward.py``): the same answer
    as ``/get_reward``, scored by the reward model in ``$MOSLIM_REWARD_MODEL`` (loaded once)."""
    import torch

    model = kwargs.get("reward_model") or os.environ.get("MOSLIM_REWARD_MODEL")
    if not model:
        raise ValueError("set MOSLIM_REWARD_MODEL to the reward model's folder (e.g. runs/demo/rm)")
    engine, splitter = _local_engine(model)
    out = get_reward(engine, splitter, queries, prompts, labels)
    return {"rewards": torch.tensor(out["rewards"]), "scores": torch.tensor(out["scores"]),
            "extra_logs": {k: torch.tensor(v) for k, v in out["extra_logs"].items()}}
