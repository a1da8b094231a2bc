"""JSON in and out of the server that can't fail on text: lone surrogates (``"\\ud800"``, legal in JSON
escapes but not encodable as UTF-8) are replaced by U+FFFD, NaN/infinity become ``null``, and a request
body is checked (size, UTF-8) before any route sees it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ..payload import clean_text
from ..response import Response, response_json

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A JSON escape of a surrogate (paired ones too: cleaning a valid pair changes nothing).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def clean(value: Any) -> Any:
    """A JSON-like value whose strings (keys included) are encodable and whose numbers are finite."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {clean_text(str(k)) if isinstance(k, str) else k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def dumps(content: Any) -> bytes:
    """Compact UTF-8 JSON of ``content``, whatever strings or floats it holds."""
    try:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except (UnicodeEncodeError, ValueError):
        return json.dumps(
            clean(content), ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str
        ).encode()


def model_json(model: BaseModel) -> bytes:
    """A model's JSON; falls back to a cleaned dump when pydantic can't encode it (lone surrogates)."""
    try:
        return response_json(model) if type(model) is Response else model.model_dump_json().encode()
    except Exception:  # PydanticSerializationError, UnicodeEncodeError
        return dumps(model.model_dump(mode="json", fallback=str))


class SafeJSONResponse(JSONResponse):
    """The server's default response class: never a 500 because of what the text contains."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


def _reject(status: int, message: str, code: str) -> tuple[int, bytes]:
    if status == 422:
        body: dict[str, Any] = {
            "detail": [{"loc": ["body"], "msg": message, "type": code}],
            "error": "validation_error",
            "message": f"body: {message}",
        }
    else:
        body = {"detail": message, "error": code}
    return status, dumps(body)


class BodyGuard:
    """ASGI middleware in front of every route: a request body over ``max_bytes`` is a 413 (announced
    by ``Content-Length`` or counted while streaming), a body that is not UTF-8 a 422, and JSON string
    escapes of lone surrogates are replaced by U+FFFD before parsing. For ``/protect/invoke`` the
    payload, ``metadata`` and ``headers`` are left to the library, which cleans them and says so in the
    response (``sanitized``)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        length = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if length is None and not chunked:
            await self.app(scope, receive, send)
            return
        too_big = _reject(
            413,
            f"request body too large: the limit is {self.max_bytes} bytes (STAGEGUARD_MAX_BODY_BYTES)",
            "payload_too_large",
        )
        try:
            announced = int(length) if length is not None else 0
        except ValueError:
            announced = 0
        if announced > self.max_bytes:
            await _answer(send, *too_big)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _answer(send, *too_big)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            await _answer(
                send, *_reject(422, f"the body is not valid UTF-8 (byte {exc.start})", "json_invalid")
            )
            return
        if _SURROGATE_ESCAPE.search(body):
            body = _clean_body(body, keep_payload=scope.get("path") == "/protect/invoke")
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# Fields of an invoke the library cleans itself, and reports in the response's ``sanitized``.
_LIBRARY_CLEANS = ("payload", "metadata", "headers")


def _clean_body(body: bytes, *, keep_payload: bool) -> bytes:
    try:
        data = json.loads(body)
    except ValueError:
        return body  # not JSON: the route answers 422
    if keep_payload and isinstance(data, dict):
        kept = {key: data.pop(key) for key in _LIBRARY_CLEANS if key in data}
        cleaned = dumps(clean(data))
        raw = b",".join(json.dumps(key).encode() + b":" + _raw_json(value) for key, value in kept.items())
        if not raw:
            return cleaned
        return cleaned[:-1] + (b"," if cleaned != b"{}" else b"") + raw + b"}"
    return dumps(clean(data))


def _raw_json(value: Any) -> bytes:
    """JSON of ``value`` keeping lone surrogates as escapes (the library cleans and reports them)."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode()


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
