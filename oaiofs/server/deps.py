"""FastAPI dependencies and request glue: a database session per request (committed before the response),
the current user (:func:`get_current_user` as a dependency, :func:`authenticate` in a short session of its own)."""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import logging
import os
import threading
from typing import Any, Callable, Iterator

import cachetools
from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from .diskfull import is_disk_full, storage_full
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from .. import protocol
from ..errors import OaioError, Unauthorized, Unavailable
from . import security
from .throttle import LoginThrottle
from .models import Token, User
from .state import get_state as get_state, transaction

log = logging.getLogger(__name__)
SESSIONS_KEY = "oaiofs.sessions"     # request.scope entry: the sessions to finish before responding
FINISHED = "oaiofs.finished"         # Session.info: committed or rolled back, and closed
ACCOUNT_DISABLED = protocol.ERROR_ACCOUNT_DISABLED
AUTH_CHALLENGE = {"WWW-Authenticate": 'Basic realm="oaiofs"'}


def get_db(request: Request) -> Iterator[Session]:
    """A session for one request.

    It is committed (or, for an error status, rolled back) by
    :class:`CommitBeforeResponse` *before* the response starts, so a client never
    sees success for a change that failed to commit; this dependency's own exit
    only closes it (and rolls back after an unexpected exception).
    """
    session = get_state(request).sessionmaker()
    request.scope.setdefault(SESSIONS_KEY, []).append(session)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


class CommitBeforeResponse:
    """ASGI middleware: finish the request's sessions when the response starts.

    Status < 400 commits, anything else rolls back. If the commit fails, the
    response is replaced by a JSON error (503 ``unavailable`` when the database
    is busy, else 500 ``internal``).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replaced = False

        async def send_after_commit(message: dict) -> None:
            nonlocal replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                sessions = [s for s in scope.get(SESSIONS_KEY, ()) if not s.info.get(FINISHED)]
                error = (await run_in_threadpool(finish_sessions, sessions, message["status"] < 400)
                         if sessions else None)     # OneHopRoute finished its session in the handler's thread
                if error is not None:
                    replaced = True
                    await JSONResponse(error.to_json(), status_code=error.http_status)(scope, receive, send)
                    return
            await send(message)

        await self.app(scope, receive, send_after_commit)


def finish_sessions(sessions: list[Session], commit: bool) -> OaioError | None:
    """Commit (or roll back) and close ``sessions``; the JSON error to answer if the commit failed."""
    try:
        for session in sessions:
            session.commit() if commit else session.rollback()
            session.close()
            session.info[FINISHED] = True
    except Exception as exc:   # noqa: BLE001 - reported to the client instead of a false success
        for session in sessions:
            session.rollback()
            session.close()
            session.info[FINISHED] = True
        log.exception("commit failed")
        if is_disk_full(exc):
            return storage_full("the server's disk is full; the change was not stored")
        if isinstance(exc, OperationalError):
            return Unavailable("the database is busy; try again")
        return OaioError("internal server error")
    return None


def unauthorized(message: str) -> Unauthorized:
    """A 401 error carrying the Basic challenge header."""
    err = Unauthorized(message)
    err.headers = AUTH_CHALLENGE  # type: ignore[attr-defined]
    return err


def user_from_token(db: Session, token: str) -> User | None:
    """The user of a valid, unexpired token."""
    row = db.execute(select(User, Token.expires).join(Token, Token.user_id == User.id)     # one query
                     .where(Token.token_hash == security.token_hash(token))).first()
    if row is None:
        return None
    user, expires = row
    expires = expires if expires.tzinfo else expires.replace(tzinfo=dt.timezone.utc)
    if expires <= dt.datetime.now(dt.timezone.utc):
        return None
    return user


# Basic auth sends the password with every request; scrypt costs ~50 ms of CPU, so a
# successful check is remembered for a few minutes (keyed by the stored hash, so a
# changed password is never served from the cache; the password itself is not kept).
_verified: cachetools.TTLCache[str, bool] = cachetools.TTLCache(maxsize=1024, ttl=300)
_verified_lock = threading.Lock()
_verified_key = os.urandom(32)   # keyed HMAC: a cache entry is useless for guessing outside this process


LOGIN_THROTTLE = LoginThrottle()   # per process (see oaiofs.server.throttle)


def user_from_password(db: Session, username: str, password: str, address: str | None = None) -> User | None:
    """The user if ``password`` is right.

    Recently verified credentials answer from the cache; otherwise the login
    throttle may refuse at once (429, before any hashing), and an unknown user
    name costs the same scrypt as a known one.
    """
    user = db.scalar(select(User).where(User.username == username))
    if user is not None:
        key = hmac.new(_verified_key, f"{user.password_hash}\0{password}".encode("utf-8"), "sha256").hexdigest()
        with _verified_lock:
            if key in _verified:
                return user
    LOGIN_THROTTLE.check(username, address)
    if user is None:
        security.burn_password_check(password)
        LOGIN_THROTTLE.failed(username, address)
        return None
    if not security.verify_password(password, user.password_hash):
        LOGIN_THROTTLE.failed(username, address)
        return None
    LOGIN_THROTTLE.succeeded(username)
    with _verified_lock:
        _verified[key] = True
    return user


def client_address(request: Request) -> str | None:
    """The peer address of the request (a proxy in front would need its own limits)."""
    return request.client.host if request.client else None


def check_enabled(user: User) -> User:
    """``user``, or 401 ``account_disabled`` if an administrator disabled the account."""
    if user.disabled:
        err = unauthorized(f"the account {user.username!r} is disabled; ask the server administrator")
        err.code = ACCOUNT_DISABLED
        err.detail = {"username": user.username}
        raise err
    return user


def get_current_user(request: Request, db: Session = Depends(get_db)) -> User:
    """The authenticated caller (``Bearer`` token or HTTP ``Basic``), else 401."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if not header:
        raise unauthorized("authentication required")
    if scheme == "bearer" and credentials:
        user = user_from_token(db, credentials)
        if user is None:
            raise unauthorized("invalid or expired token")
        return check_enabled(user)
    if scheme == "basic" and credentials:
        try:
            username, sep, password = base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise unauthorized("malformed Basic credentials") from None
        user = user_from_password(db, username, password, client_address(request)) if sep else None
        if user is None:
            raise unauthorized("wrong user name or password")
        return check_enabled(user)
    raise unauthorized("unsupported authorization scheme")


def authenticate(request: Request) -> int:
    """The caller's user id (Bearer or Basic), checked in a short session of its own."""
    with transaction(get_state(request)) as db:
        return get_current_user(request, db).id
