"""The MOSLIM reward as verl's custom reward function.

verl calls ``compute_score(data_source, solution_str, ground_truth, extra_info)`` per answer (its
``naive`` reward manager) or ``compute_score_batch(data_sources, solution_strs, ground_truths,
extra_infos)`` once per batch (its ``batch`` manager), plus whatever ``custom_reward_function.
reward_kwargs`` holds. The prompt is not passed, so each row's ``extra_info`` carries the plain
``question`` and the ``preference`` (``"verbosity=1"`` or ``{"verbosity": 1}``); a preference in
``ground_truth`` is used when ``extra_info`` has none. The result is ``{"score": reward, "<objective>
_level": expected level, ...}``: verl trains on ``score`` and logs the rest.

Scoring runs in-process with ``model=`` (a reward-model folder, loaded once) or through a running
``moslim serve`` with ``url=`` (its ``/v1/score``; ``api_key=`` or ``$MOSLIM_API_KEY``); without either,
``$MOSLIM_REWARD_URL`` or ``$MOSLIM_REWARD_MODEL``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any


def compute_score(data_source: str, solution_str: str, ground_truth: Any = None, extra_info: dict | None = None,
                  **reward_kwargs) -> dict:
    """One answer's MOSLIM reward for verl (``custom_reward_function.name=compute_score``)."""
    return compute_score_batch([data_source], [solution_str], [ground_truth], [extra_info], **reward_kwargs)[0]


def compute_score_batch(data_sources: Sequence[str], solution_strs: Sequence[str], ground_truths: Sequence[Any],
                        extra_infos: Sequence[dict | None], *, model: str | None = None, url: str | None = None,
                        api_key: str | None = None, timeout: float = 300.0, **_ignored) -> list[dict]:
    """All answers of a batch in one reward-model pass (``reward_model.reward_manager=batch``)."""
    items = [_item(i, solution, truth, info or {})
             for i, (solution, truth, info) in enumerate(zip(solution_strs, ground_truths, extra_infos))]
    url = url or (None if model else os.environ.get("MOSLIM_REWARD_URL"))
    model = model or os.environ.get("MOSLIM_REWARD_MODEL")
    if url:
        scored = _score_remote(url, items, api_key or os.environ.get("MOSLIM_API_KEY"), timeout)
    elif model:
        from moslim.serve.engine import read_preference

        engine = _local_engine(model)
        preferences = [read_preference(p["preferences"], engine.objectives, f"extra_info[{i}].preference")
                       for i, p in enumerate(items)]
        scored = engine.score([p["prompt"] for p in items], [p["response"] for p in items], preferences)
    else:
        raise ValueError("the MOSLIM reward needs a reward model: set custom_reward_function.reward_kwargs.model "
                         "(a folder) or .url (a running `moslim serve`), or $MOSLIM_REWARD_MODEL / $MOSLIM_REWARD_URL")
    return [_result(s) for s in scored]


def _item(i: int, solution: str, ground_truth: Any, info: dict) -> dict:
    question = info.get("question", info.get("prompt"))
    if not isinstance(question, str | list):
        raise ValueError(f"extra_info[{i}]: expected 'question' (the plain question the answer replies to), "
                         f"got keys {sorted(info)}")
    preference = info.get("preference", info.get("preferences"))
    if preference is None and isinstance(ground_truth, str | dict):
        preference = ground_truth
    return {"prompt": question, "response": solution, "preferences": preference}


def _result(scored: dict) -> dict:
    out = {"score": scored["reward"] if scored["reward"] is not None else 0.0}
    out.update({f"{name}_level": level for name, level in scored["expected_levels"].items()})
    return out


@lru_cache(maxsize=2)
def _local_engine(model: str):
    from moslim.serve.engine import load_engine

    return load_engine(reward_model=model)


def _score_remote(url: str, items: list[dict], api_key: str | None, timeout: float) -> list[dict]:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.post(url.rstrip("/") + "/v1/score", json={"items": items}, headers=headers, timeout=timeout)
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        raise ValueError(f"{url}/v1/score answered {response.status_code}: {message}")
    return response.json()["results"]
