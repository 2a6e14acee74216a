"""FastAPI dependencies: the app state, a database session per request, the current user."""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
from typing import TYPE_CHECKING, Iterator

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import Unauthorized
from . import security
from .models import Token, User

if TYPE_CHECKING:
    from .app import AppState

log = logging.getLogger(__name__)
AUTH_CHALLENGE = {"WWW-Authenticate": 'Basic realm="oaiofs"'}


def get_state(request: Request) -> "AppState":
    """The :class:`~oaiofs.server.app.AppState` of the running app."""
    return request.app.state.oaiofs


def get_db(request: Request) -> Iterator[Session]:
    """A session for one request: committed on success, rolled back on any error."""
    session = get_state(request).sessionmaker()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def unauthorized(message: str) -> Unauthorized:
    """A 401 error carrying the Basic challenge header."""
    err = Unauthorized(message)
    err.headers = AUTH_CHALLENGE  # type: ignore[attr-defined]
    return err


def user_from_token(db: Session, token: str) -> User | None:
    """The user of a valid, unexpired token."""
    row = db.get(Token, security.token_hash(token))
    if row is None:
        return None
    expires = row.expires if row.expires.tzinfo else row.expires.replace(tzinfo=dt.timezone.utc)
    if expires <= dt.datetime.now(dt.timezone.utc):
        return None
    return db.get(User, row.user_id)


def user_from_password(db: Session, username: str, password: str) -> User | None:
    """The user if ``password`` is right."""
    user = db.scalar(select(User).where(User.username == username))
    if user is None or not security.verify_password(password, user.password_hash):
        return None
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
        return user
    if scheme == "basic" and credentials:
        try:
            username, sep, password = base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise unauthorized("malformed Basic credentials") from None
        user = user_from_password(db, username, password) if sep else None
        if user is None:
            raise unauthorized("wrong user name or password")
        return user
    raise unauthorized("unsupported authorization scheme")
