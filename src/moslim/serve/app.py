"""The HTTP side of ``moslim serve``: OpenAI-compatible chat, scoring, OpenRLHF's reward, the page.

Routes (``/v1/*`` and ``/get_reward`` need ``Authorization: Bearer KEY`` when the server has a key):
- ``POST /v1/chat/completions``: OpenAI's request plus a top-level ``preferences`` object (what the
  OpenAI SDK sends for ``extra_body``); ``stream``, ``n``, ``temperature``, ``top_p``, ``max_tokens``
  (capped), ``seed``. Each choice carries ``moslim``: the reward model's levels for the answer.
- ``GET /v1/models``, ``GET /v1/objectives`` (the objective set with its level descriptions).
- ``POST /v1/score``: (prompt, response) items -> per objective the level and its probabilities, and
  the mapped reward when a preference is given.
- ``POST /get_reward``: OpenRLHF's remote reward (see ``moslim.serve.openrlhf_reward``).
- ``GET /``: the page (one slider per objective, two settings side by side); ``GET /health``.

Requests queue for the model thread in two batchers (generation, scoring): requests that arrive
together share one ``generate_batch`` call and one reward-model forward. Errors come back in OpenAI's
shape ``{"error": {"message", "type", "param", "code"}}`` with a 4xx status and a message that names
the field; a full queue answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from moslim.preferences import Preference
from moslim.serve.batching import Batcher, QueueFull
from moslim.serve.engine import ChatJob, Engine, read_preference
from moslim.serve.errors import ApiError, Gate, add_error_handlers
from moslim.serve.openrlhf_reward import QuerySplitter, rewards_payload, split_rows
from moslim.serve.schemas import ChatRequest, Message, RewardRequest, ScoreRequest

PAGE = Path(__file__).resolve().parents[1] / "assets" / "serve"


@dataclass
class ServeSettings:
    """Limits and defaults of one server (``moslim serve`` flags)."""

    api_key: str | None = None  # None: no key needed (the server binds 127.0.0.1 by default)
    max_tokens: int = 256  # cap on a request's max_tokens: one long request holds its batch's rows
    default_max_tokens: int = 128  # when the request names none (the demo's training cap)
    max_n: int = 8  # answers per request
    temperature: float = 0.7  # when the request names none (moslim generate's default)
    top_p: float = 0.95
    max_prompt_tokens: int = 1024  # rendered prompt, system message included
    max_batch_rows: int = 16  # answers per generation batch / responses per scoring batch
    batch_window_ms: float = 10.0  # how long the first request of a batch waits for company
    max_queue: int = 64  # requests waiting per batcher before 503
    max_body_bytes: int = 1_000_000
    max_score_items: int = 256  # responses per /v1/score or /get_reward request


def create_app(engine: Engine, settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        executor = ThreadPoolExecutor(1, thread_name_prefix="moslim-model")  # batches never overlap
        options = dict(max_rows=settings.max_batch_rows, window_s=settings.batch_window_ms / 1000,
                       max_waiting=settings.max_queue)
        app.state.chat = Batcher(engine.generate, executor, name="generation", **options)
        app.state.score = Batcher(lambda batch: _score_batch(engine, batch), executor, name="scoring", **options)
        app.state.chat.start()
        app.state.score.start()
        try:
            yield
        finally:
            await app.state.chat.stop()
            await app.state.score.stop()
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="moslim", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine, app.state.settings = engine, settings
    app.state.splitter = QuerySplitter(engine)
    app.add_middleware(Gate, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes)
    add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=PAGE), name="static")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(PAGE / "index.html")

    @app.get("/health")
    async def health(request: Request):
        state = request.app.state
        return {"status": "ok", "policy": engine.policy is not None, "reward_model": engine.scorer is not None,
                **{name: {"waiting": b.waiting, "batches": b.batches, "rows": b.rows, "largest": b.largest}
                   for name, b in (("generation", state.chat), ("scoring", state.score))}}

    @app.get("/v1/models")
    async def models():
        data = [{"id": engine.model_name, "object": "model", "created": 0, "owned_by": "moslim"}] \
            if engine.policy is not None else []
        return {"object": "list", "data": data}

    @app.get("/v1/objectives")
    async def objectives():
        return {**engine.objectives.to_dict(), "template": engine.template.to_dict(),
                "reward_model": engine.scorer is not None, "model": engine.model_name if engine.policy else None,
                "defaults": {"max_tokens": settings.default_max_tokens, "max_tokens_cap": settings.max_tokens,
                             "temperature": settings.temperature, "top_p": settings.top_p}}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        job, preference = _chat_job(engine, settings, body)
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": engine.model_name}
        moslim = {"preferences": preference.as_dict(), "system_message": engine.system_message(preference),
                  "user_suffix": engine.template.user_suffix(preference, engine.objectives).strip()}
        if body.stream:
            queue: asyncio.Queue = asyncio.Queue()
            loop = asyncio.get_running_loop()
            job.stream = lambda index, text: loop.call_soon_threadsafe(queue.put_nowait, (index, text))
            future = _submit(request.app.state.chat, job, job.n, job.batch_key)
            future.add_done_callback(lambda _: queue.put_nowait(None))
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(_stream_events(job, future, queue, meta, moslim, include_usage),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        answers = await _result(_submit(request.app.state.chat, job, job.n, job.batch_key))
        choices = [{"index": i, "message": {"role": "assistant", "content": a.text}, "logprobs": None,
                    "finish_reason": a.finish_reason, **({"moslim": a.scored} if a.scored else {})}
                   for i, a in enumerate(answers)]
        return {**meta, "object": "chat.completion", "choices": choices, "usage": _usage(job, answers),
                "moslim": moslim}

    @app.post("/v1/score")
    async def score(body: ScoreRequest, request: Request):
        _need_reward_model(engine)
        _check_items(len(body.items), settings, "items")
        default = _preference(body.preferences, engine, "preferences")
        preferences = [_preference(p.preferences, engine, f"items[{i}].preferences") if p.preferences is not None
                       else default for i, p in enumerate(body.items)]
        prompts = [p.prompt if isinstance(p.prompt, str) else _turns(p.prompt, keep_system=False) for p in body.items]
        rows = list(zip(prompts, [p.response for p in body.items], preferences))
        scored = await _result(_submit(request.app.state.score, rows, len(rows)))
        results = [{**s, "preferences": pref.as_dict()} for s, pref in zip(scored, preferences)]
        return {"object": "moslim.score", "model": engine.model_name, "method": engine.mapping,
                "objectives": engine.objectives.names, "results": results}

    @app.post("/get_reward")
    async def get_reward(body: RewardRequest, request: Request):
        _need_reward_model(engine)
        _check_items(len(body.query), settings, "query")
        try:
            rows = split_rows(request.app.state.splitter, body.query, body.prompts, body.labels)
        except ValueError as err:
            raise ApiError(400, str(err), param=str(err).split(":")[0]) from None
        return rewards_payload(engine, await _result(_submit(request.app.state.score, rows, len(rows))))

    return app


# -- requests -> jobs -----------------------------------------------------------------------------
def _chat_job(engine: Engine, settings: ServeSettings, body: ChatRequest) -> tuple[ChatJob, Preference]:
    if engine.policy is None:
        raise ApiError(400, "this server has no policy (started without --policy): only /v1/score and "
                       "/get_reward are served", param="model")
    if body.model != engine.model_name:
        raise ApiError(404, f"model: {body.model!r} is not served here; the model is {engine.model_name!r} "
                       "(GET /v1/models)", param="model", code="model_not_found")
    if body.n > settings.max_n:
        raise ApiError(400, f"n: at most {settings.max_n} answers per request, got {body.n}", param="n")
    if body.preferences is not None:
        preference = _preference(body.preferences, engine, "preferences")
    else:  # a system message may carry preference lines rendered by the policy's template
        system = "\n".join(m.text() for m in body.messages if m.role in ("system", "developer"))
        try:
            preference = engine.template.parse(system, engine.objectives)
        except ValueError as err:
            raise ApiError(400, f"messages: the system message asks for {err}", param="messages") from None
    turns = _turns(body.messages, keep_system=False)
    if not turns or turns[-1]["role"] != "user":
        raise ApiError(400, "messages: the last message must be the user's (system messages are replaced by "
                       "the rendered preference)", param="messages")
    prompt_ids = engine.prompt_ids(turns, preference)
    if len(prompt_ids) > settings.max_prompt_tokens:
        raise ApiError(400, f"messages: the prompt is {len(prompt_ids)} tokens with the system message; this "
                       f"server takes at most {settings.max_prompt_tokens}", param="messages")
    requested = body.max_completion_tokens or body.max_tokens or settings.default_max_tokens
    max_tokens = min(requested, settings.max_tokens)
    if engine.max_positions:
        max_tokens = min(max_tokens, engine.max_positions - len(prompt_ids))
        if max_tokens < 1:
            raise ApiError(400, f"messages: the prompt fills the model's {engine.max_positions} positions",
                           param="messages")
    job = ChatJob(prompt_ids, turns, preference, n=body.n, max_tokens=max_tokens,
                  temperature=settings.temperature if body.temperature is None else body.temperature,
                  top_p=settings.top_p if body.top_p is None else body.top_p, seed=body.seed)
    return job, preference


def _turns(messages: list[Message], keep_system: bool) -> list[dict]:
    return [{"role": m.role, "content": m.text()} for m in messages
            if keep_system or m.role not in ("system", "developer")]


def _preference(value, engine: Engine, where: str) -> Preference:
    try:
        return read_preference(value, engine.objectives, where)
    except ValueError as err:
        raise ApiError(400, str(err), param=where) from None


def _need_reward_model(engine: Engine) -> None:
    if engine.scorer is None:
        raise ApiError(400, "this server has no reward model (start it with --reward-model)")


def _check_items(count: int, settings: ServeSettings, field: str) -> None:
    if count > settings.max_score_items:
        raise ApiError(400, f"{field}: at most {settings.max_score_items} per request, got {count}", param=field)


def _submit(batcher: Batcher, payload, rows: int, key=None) -> asyncio.Future:
    try:
        return batcher.submit(payload, rows=rows, key=key)
    except QueueFull as err:
        raise ApiError(503, str(err), type_="server_overloaded", code="queue_full",
                       headers={"Retry-After": "1"}) from None


async def _result(future: asyncio.Future):
    """The batch's result for one request; a failed batch becomes a 500 for each of its requests."""
    try:
        return await future
    except Exception as err:  # noqa: BLE001 - the batcher logged it; the server goes on
        raise ApiError(500, f"the batch failed: {type(err).__name__}: {err}", type_="server_error") from None


def _score_batch(engine: Engine, batch: list[list[tuple]]) -> list[list[dict]]:
    """Every pair of every request in one reward-model pass, split back per request."""
    rows = [row for request in batch for row in request]
    scored = engine.score(*zip(*rows))
    out, start = [], 0
    for request in batch:
        out.append(scored[start:start + len(request)])
        start += len(request)
    return out


def _usage(job: ChatJob, answers) -> dict:
    completion = sum(a.completion_tokens for a in answers)
    return {"prompt_tokens": len(job.prompt_ids), "completion_tokens": completion,
            "total_tokens": len(job.prompt_ids) + completion}


async def _stream_events(job: ChatJob, future: asyncio.Future, queue: asyncio.Queue, meta: dict, moslim: dict,
                         include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format; the last chunk of each choice carries its levels."""
    def event(choices: list[dict], **extra) -> str:
        return f"data: {json.dumps({**meta, 'object': 'chat.completion.chunk', 'choices': choices, **extra})}\n\n"

    try:
        yield event([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                     for i in range(job.n)], moslim=moslim)
        while (item := await queue.get()) is not None:
            index, text = item
            yield event([{"index": index, "delta": {"content": text}, "finish_reason": None}])
        try:
            answers = future.result()
        except Exception as err:  # noqa: BLE001 - the client hears about it, the server goes on
            error = {"message": f"{type(err).__name__}: {err}", "type": "server_error"}
            yield f"data: {json.dumps({'error': error})}\n\n"
            return
        for i, answer in enumerate(answers):
            yield event([{"index": i, "delta": {}, "finish_reason": answer.finish_reason,
                          **({"moslim": answer.scored} if answer.scored else {})}])
        if include_usage:
            yield event([], usage=_usage(job, answers))
        yield "data: [DONE]\n\n"
    finally:
        if not future.done():  # the client went away: stop its rows, or drop it from the queue
            job.cancelled = True
            future.cancel()
