"""``create_app(settings)``: wires database, blob store, notifier, routers and error handlers.

Every error leaves the server as ``{"error": code, "message": text, "detail": {}}``
(see :mod:`oaiofs.errors`): ``OaioError`` with its own status, request
validation errors as 422 ``invalid_value`` (400 ``malformed_json`` when the body
is not JSON), unknown routes and methods as 404/405, anything unexpected as 500
``internal`` with the traceback in the log.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import threading
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__, protocol
from ..errors import OaioError
from . import db as dbmod
from . import openapi
from .admission import Admission, AdmissionMiddleware, size_thread_pool
from .edge import StrictInput, replay_body
from .changes import Notifier
from .deps import CommitBeforeResponse
from .diskfull import is_disk_full, storage_full
from .settings import ServerSettings
from .state import AppState

log = logging.getLogger(__name__)

PURGE_INTERVAL_S = 300.0
JSON_BODY_LIMIT = protocol.MAX_VALUES_BYTES + 64 * 1024     # values plus the JSON envelope
DRAIN_LIMIT = 16 * 1024 * 1024     # oversized bodies up to this size are read before the 413
_HTTP_CODES = {400: "invalid_input", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 410: "gone", 412: "precondition_failed",
               413: "too_large", 415: "unsupported_media_type", 422: "invalid_value"}


def _end_long_polls_on_signals(state: AppState) -> None:
    """Chain onto the server's SIGTERM/SIGINT handlers so open long-polls return before shutdown."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            state.closing = True
            state.notifier.notify()
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:          # behave as before: restore and re-deliver
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        signal.signal(sig, handler)


def open_blobs(settings: ServerSettings) -> Any:
    """The blob store, or None while ``oaiofs.server.blobs`` is not available."""
    try:
        blobs = importlib.import_module("oaiofs.server.blobs")
        opener = blobs.open_blob_store
    except (ImportError, AttributeError) as exc:
        log.warning("no blob store available (%s); file transfers are disabled", exc)
        return None
    return opener(settings.blobs_url, settings.data_dir, settings.s3_endpoint,
                  min_free_bytes=settings.min_free_bytes)


def _error_response(err: OaioError) -> JSONResponse:
    return JSONResponse(err.to_json(), status_code=err.http_status, headers=getattr(err, "headers", None))


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()]


def install_error_handlers(app: FastAPI) -> None:
    """Turn every failure into the JSON error shape."""

    @app.exception_handler(OaioError)
    async def _oaio_error(_request: Request, exc: OaioError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            body = {"error": "malformed_json", "message": "request body is not valid JSON", "detail": {"errors": errors}}
            return JSONResponse(body, status_code=400)
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        message = f"{'.'.join(first['loc'])}: {first['msg']}" if first["loc"] else first["msg"]
        return JSONResponse({"error": "invalid_value", "message": message, "detail": {"errors": errors}},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code
        return JSONResponse({"error": code, "message": message, "detail": {}}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_disk_full(exc):
            log.warning("disk full on %s %s: %s", request.method, request.url.path, exc)
            return _error_response(storage_full())
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal", "message": "internal server error", "detail": {}}, status_code=500)


class JsonBodyLimit:
    """Refuse JSON API bodies over their limit with 413 before they reach a handler.

    The body is read in pieces and given up on as soon as it passes the limit, so an
    oversized body never sits in memory: ``limit`` for the JSON API,
    ``protocol.MAX_CART_BODY_BYTES`` for a cart's create body; file and tus bodies are
    streamed by their handlers and not limited here.
    """

    def __init__(self, app: Any, limit: int = JSON_BODY_LIMIT) -> None:
        self.app, self.limit = app, limit

    def limit_for(self, path: str) -> int | None:
        """The body limit of ``path`` (None: not a JSON body this middleware limits)."""
        if not path.startswith(protocol.API_PREFIX) or path.startswith(protocol.PATH_UPLOADS):
            return None
        if protocol.is_batch_path(path):
            return None                 # a tar body, streamed and limited by its route
        if path.startswith(protocol.PATH_CARTS + "/"):
            return protocol.MAX_CART_BODY_BYTES if "/files/" not in path else None
        return None if "/files/" in path else self.limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        limit = self.limit_for(scope["path"]) if scope["type"] == "http" else None
        if limit is None or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isascii() and length.isdigit() and int(length) > limit:
            await self._too_large(scope, receive, send, limit, int(length) <= DRAIN_LIMIT)
            return
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            more = message.get("more_body", False)
            if total > limit:
                await self._too_large(scope, receive, send, limit, more)
                return
            chunks.append(chunk)
        await replay_body(self.app, scope, b"".join(chunks), receive, send)

    async def _too_large(self, scope: dict, receive: Callable, send: Callable, limit: int,
                         more: bool = True) -> None:
        # read (and drop) a moderately oversized body first so the client sees the 413, not a broken pipe
        drained = 0
        while more and drained <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            drained += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = {"error": "too_large", "message": f"request body is larger than {limit} bytes",
                "detail": {"limit": limit}}
        await JSONResponse(body, status_code=413, headers={"Connection": "close"})(scope, receive, send)


def _routers() -> list[Any]:
    from . import (compat_ae, routes_admin, routes_auth, routes_batch, routes_carts, routes_changes, routes_files,
                   routes_history, routes_objects, routes_trash, routes_uploads)
    return [routes_auth.router, routes_objects.router, routes_changes.router, routes_files.router, routes_batch.router,
            routes_uploads.router, routes_carts.router, routes_admin.router, routes_history.router, routes_trash.router,
            *compat_ae.routers]


async def _purge_loop(state: AppState) -> None:
    """Periodically drop expired tokens and let the transfer services purge their leftovers."""
    from . import routes_auth
    names = ("oaiofs.server.upload_service", "oaiofs.server.carts", "oaiofs.server.compat_ae.storage",
             "oaiofs.server.history", "oaiofs.server.trash", "oaiofs.server.blob_gc")
    while True:
        for purge in [routes_auth.purge_expired_tokens] + [getattr(importlib.import_module(n), "purge_expired", None)
                                                              for n in names]:
            if purge is None:
                continue
            try:
                await asyncio.to_thread(purge, state)
            except Exception:   # noqa: BLE001 - a failed purge must not stop the server
                log.exception("purge %s failed", getattr(purge, "__module__", purge))
        await asyncio.sleep(getattr(state.settings, "purge_interval_s", PURGE_INTERVAL_S))


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The oaiofs ASGI application for ``settings`` (schema must be migrated already)."""
    settings = settings or ServerSettings.from_env()
    settings.ensure_dirs()
    slots = settings.max_active_requests
    engine = dbmod.make_engine(settings.database_url, **dbmod.pool_args(slots))
    notifier = Notifier()
    admission = Admission(slots, settings.max_queued_requests, settings.queue_wait_s)
    state = AppState(settings=settings, engine=engine,
                     sessionmaker=dbmod.make_sessionmaker(engine, notifier=notifier),
                     blobs=open_blobs(settings), notifier=notifier, admission=admission)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        _end_long_polls_on_signals(state)
        size_thread_pool(slots)
        task = asyncio.create_task(_purge_loop(state))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            engine.dispose()

    app = FastAPI(title="oaiofs", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Stores and shares oaio objects (values + files) between users and devices.")
    app.state.oaiofs = state
    install_error_handlers(app)
    openapi.install(app)
    app.add_middleware(CommitBeforeResponse)
    app.add_middleware(AdmissionMiddleware, admission=admission)   # inside JsonBodyLimit: bodies are read first
    app.add_middleware(StrictInput)
    app.add_middleware(JsonBodyLimit)
    for router in _routers():
        app.include_router(router)
    _install_operations(app, state)
    return app


def _install_operations(app: FastAPI, state: AppState) -> None:
    """``/healthz``, ``/metrics`` (+ request metrics, outermost) and the offline ``/docs``, ``/redoc``."""
    from . import apidocs, metrics, routes_health

    app.include_router(routes_health.router)
    apidocs.install(app)
    metrics.install(app, state)


def app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes (settings come from the environment)."""
    return create_app(ServerSettings.from_env())
