"""The running server's state and how code reaches it: :class:`AppState`, :func:`get_state`,
:func:`transfer_state` and the short-transaction helper :func:`transaction`.

Services take an ``AppState`` (or a ``Session``) and import this module, never the FastAPI
dependencies (:mod:`oaiofs.server.deps`) or the app (:mod:`oaiofs.server.app`, which builds
the state in ``create_app``). This module sits below the services: it imports only the
settings, the database helpers and the admission control.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ContextManager, Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import HTTPConnection

from ..errors import OaioError
from .admission import Admission
from .db import transaction as transaction   # the one short-transaction helper (defined beside the sessions)
from .settings import ServerSettings

__all__ = ["AppState", "ChangeNotifier", "get_state", "transaction", "transfer_state"]


class ChangeNotifier(Protocol):
    """What the state holds of :class:`oaiofs.server.changes.Notifier`: wake long-polls, listen for a wake-up."""

    def notify(self) -> None: ...

    def listen(self) -> ContextManager[Any]: ...


@dataclasses.dataclass
class AppState:
    """Everything a request handler may need (``request.app.state.oaiofs``)."""

    settings: ServerSettings
    engine: Engine
    sessionmaker: sessionmaker[Session]
    blobs: Any
    notifier: ChangeNotifier
    admission: Admission | None = None
    closing: bool = False     # set on SIGTERM/SIGINT: open long-polls answer at once


def get_state(request: HTTPConnection) -> AppState:
    """The :class:`AppState` of the running app."""
    state: AppState = request.app.state.oaiofs
    return state


def transfer_state(request: HTTPConnection) -> AppState:
    """The app state, if a blob store is configured (503 otherwise)."""
    state = get_state(request)
    if state.blobs is None:
        raise OaioError("file storage is not configured", http_status=503, code="unavailable")
    return state
