"""Django-style CSRF and session cookies for the seed client (``ae.oaio_client``).

* ``csrftoken``: a random value set on any GET of a compat slug (and rotated at
  login); every POST must carry the same value in ``X-CSRFToken`` and in the
  cookie (double submit), else 403.
* ``sessionid``: an ordinary oaiofs login token (only its sha256 is stored), set
  by ``POST login/``; it expires with the token TTL and is dropped by ``logout/``.
  A missing, unknown or expired session answers 401 — the client's only trigger
  to log in again.
"""
from __future__ import annotations

import datetime as dt
import hmac
import re
import secrets

from fastapi import Request, Response
from sqlalchemy import delete
from sqlalchemy.orm import Session

from ...errors import Forbidden, Unauthorized
from .. import security
from ..deps import check_enabled, user_from_token
from ..models import Token, User

CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE = "csrftoken", "X-CSRFToken", "sessionid"
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


def ensure_csrf_cookie(request: Request, response: Response) -> str:
    """Keep a well-formed ``csrftoken`` cookie, or set a new one; returns its value."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if _TOKEN_RE.match(current):
        return current
    return rotate_csrf(response)


def rotate_csrf(response: Response) -> str:
    """Set a fresh ``csrftoken`` (as Django does at login)."""
    value = secrets.token_urlsafe(32)
    response.set_cookie(CSRF_COOKIE, value, path="/", samesite="lax")
    return value


def check_csrf(request: Request) -> None:
    """403 unless the ``X-CSRFToken`` header equals the ``csrftoken`` cookie."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    if not cookie or not header or not hmac.compare_digest(cookie.encode(), header.encode()):
        raise Forbidden("CSRF check failed: X-CSRFToken must equal the csrftoken cookie (GET the URL first)")


def start_session(db: Session, user: User, response: Response, ttl_s: int) -> None:
    """Create a login token and hand it out as the ``sessionid`` cookie."""
    token = security.new_token()
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=ttl_s)
    db.add(Token(token_hash=security.token_hash(token), user_id=user.id, expires=expires))
    response.set_cookie(SESSION_COOKIE, token, path="/", httponly=True, samesite="lax", max_age=ttl_s)


def session_user(request: Request, db: Session) -> User:
    """The user of the request's ``sessionid`` cookie, else 401."""
    token = request.cookies.get(SESSION_COOKIE, "")
    user = user_from_token(db, token) if token and len(token) <= 256 else None
    if user is None:
        raise Unauthorized("no valid session: POST login/ first")
    return check_enabled(user)          # a disabled account: 401 account_disabled


def end_session(request: Request, db: Session, response: Response) -> None:
    """Invalidate the session token and clear the cookie."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if token and len(token) <= 256:
        db.execute(delete(Token).where(Token.token_hash == security.token_hash(token)))
    response.delete_cookie(SESSION_COOKIE, path="/")
