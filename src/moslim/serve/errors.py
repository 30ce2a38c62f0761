"""Errors in OpenAI's shape, and the gate every request passes: the API key and the body size.

Every error is ``{"error": {"message", "type", "param", "code"}}`` (what the OpenAI SDK reads into its
exceptions) with a 4xx status and a message naming the field, what was expected and what came.
"""

from __future__ import annotations

import hmac
import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from moslim.serve.schemas import FIELDS

log = logging.getLogger(__name__)

PROTECTED = re.compile(r"^/(v1/|get_reward)")  # what needs the API key; the page and /health do not


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, type_: str = "invalid_request_error",
                 code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = status, message, param, type_, code
        self.headers = headers


def error_response(status: int, message: str, param: str | None = None, type_: str = "invalid_request_error",
                   code: str | None = None, headers: dict | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


# -- errors -----------------------------------------------------------------------------------------
def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError):
        return error_response(err.status, err.message, err.param, err.type, err.code, err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        messages, params = [], []
        for item in err.errors()[:3]:
            param, message = _describe(item, request.url.path)
            params.append(param)
            messages.append(message)
        return error_response(400, "; ".join(messages), params[0] if params else None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        message = f"no route {request.method} {request.url.path}" if err.status_code in (404, 405) else str(err.detail)
        return error_response(err.status_code, message, headers=getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def crashed(request: Request, err: Exception):
        log.exception("request %s failed", request.url.path)
        return error_response(500, f"internal error: {type(err).__name__}: {err}", type_="server_error")


_BRANCH = re.compile(r"^(str|int|float|bool|none|list\[.*\]|dict\[.*\]|[A-Z]\w*)$")
_ROUTES = {"/v1/chat/completions": "ChatRequest", "/v1/score": "ScoreRequest", "/get_reward": "RewardRequest"}


def _describe(item: dict, path: str) -> tuple[str, str]:
    """(param, message) for one pydantic error: ``messages[0].role: Input should be ... (got 'robot')``."""
    loc = [p for p in item.get("loc", ()) if p != "body"]
    if item["type"] == "json_invalid":
        where = f" at character {loc[0]}" if loc else ""
        return "body", f"the body is not valid JSON{where}: {item.get('ctx', {}).get('error', item['msg'])}"
    loc = [p for p in loc if not (isinstance(p, str) and _BRANCH.match(p) and p not in ("n",))]
    param = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "body"
    if item["type"] == "extra_forbidden":
        supported = ""
        if len(loc) == 1:
            fields = next((f for model, f in FIELDS.items() if model.__name__ == _ROUTES.get(path)), None)
            supported = f"; supported fields: {', '.join(fields)}" if fields else ""
        return param, f"unknown field {param!r}{supported}"
    if item["type"] == "missing":
        return param, f"{param}: required field is missing"
    if item["type"] == "value_error":  # our own validators name the value already
        return param, f"{param}: {item['msg'].removeprefix('Value error, ')}"
    if param == "body":
        if isinstance(item.get("input"), bytes):  # FastAPI parses JSON only when the request says it is JSON
            return param, "the body must be JSON sent with the header 'Content-Type: application/json'"
        return param, f"the body must be a JSON object, got {type(item.get('input')).__name__}"
    return param, f"{param}: {item['msg']} (got {item.get('input')!r})"


# -- access and size ------------------------------------------------------------------------------
class Gate:
    """ASGI middleware: the API key on /v1/* and /get_reward, and the body size limit (413)."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int):
        self.app, self.api_key, self.max_body_bytes = app, api_key, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key and PROTECTED.match(scope["path"]):
            given = headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.api_key.encode()):
                what = "missing" if not given else "wrong"
                response = error_response(401, f"{what} API key: send the header 'Authorization: Bearer <key>' "
                                          "(the OpenAI SDK's api_key)", type_="authentication_error",
                                          code="invalid_api_key")
                return await response(scope, receive, send)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return await self._too_large(int(length))(scope, receive, send)
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        # Read the body here (bodies sent without a length are counted as they arrive), then hand it on.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                return await self._too_large(size)(scope, receive, send)
            if not message.get("more_body"):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # later calls wait for the disconnect, as streaming responses do
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        return await self.app(scope, replay, send)

    def _too_large_message(self, size: int) -> str:
        return f"the body is {size} bytes or more; this server takes at most {self.max_body_bytes}"

    def _too_large(self, size: int) -> JSONResponse:
        return error_response(413, self._too_large_message(size), param="body")
