"""Strict input at the edge: a request whose URL or JSON body breaks the rules never reaches a handler.

* the path and the query string must be valid UTF-8 once percent-decoded (else
  400 ``invalid_input``): otherwise Starlette would turn the bad bytes into U+FFFD
  and two different raw names would land on one file;
* a JSON body of the JSON API routes (:func:`json_api_path`)
  must pass :func:`oaiofs.protocol.check_json_body`: UTF-8, finite numbers, valid
  strings and keys, at most ``MAX_JSON_DEPTH`` levels (400/422).

Headers and Upload-Metadata are checked where they are parsed, with the same
validators (:func:`~oaiofs.protocol.parse_ascii_int`, ``parse_finite_float``,
``check_text``).
"""
from __future__ import annotations

from typing import Any, Callable
from urllib.parse import unquote_to_bytes

from fastapi.responses import JSONResponse

from .. import protocol
from ..errors import InvalidInput, OaioError


def json_api_path(path: str) -> bool:
    """True for the JSON API routes (not file, tus or cart bodies: those are streamed or parsed by their routes)."""
    return (path.startswith(protocol.API_PREFIX) and not path.startswith(protocol.PATH_UPLOADS)
            and not path.startswith(protocol.PATH_CARTS) and "/files/" not in path
            and not protocol.is_batch_path(path))


def check_url(scope: dict) -> None:
    """Raise ``InvalidInput`` if the path or query string is not UTF-8 after percent-decoding."""
    raw_path = scope.get("raw_path")
    if raw_path is None:
        raw_path = scope["path"].encode("utf-8", "surrogateescape")
    for part, raw in (("path", raw_path), ("query string", scope.get("query_string") or b"")):
        if raw.isascii() and b"%" not in raw:
            continue
        try:
            unquote_to_bytes(raw.replace(b"+", b" ") if part == "query string" else raw).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"the request {part} is not valid UTF-8 (percent-encoded)") from None


class StrictInput:
    """ASGI middleware applying :func:`check_url` and :func:`~oaiofs.protocol.check_json_body`."""

    def __init__(self, app: Any, json_paths: Callable[[str], bool] = json_api_path) -> None:
        self.app, self.json_paths = app, json_paths

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(protocol.API_PREFIX):
            await self.app(scope, receive, send)
            return
        try:
            check_url(scope)
        except OaioError as err:
            await _error(err)(scope, receive, send)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH") or not self.json_paths(scope["path"]):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body:
            try:
                protocol.check_json_body(body)
            except OaioError as err:
                await _error(err)(scope, receive, send)
                return
        await replay_body(self.app, scope, body, receive, send)


async def replay_body(app: Any, scope: dict, body: bytes, receive: Callable, send: Callable) -> None:
    """Call ``app`` with a body a middleware has already read whole (then ``receive`` as usual)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    await app(scope, replay, send)


def _error(err: OaioError) -> JSONResponse:
    return JSONResponse(err.to_json(), status_code=err.http_status)
