"""Authentication routes: login/logout, whoami, server stamp, user list."""
from __future__ import annotations

import datetime as dt
import logging

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, StrictStr
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .. import protocol
from . import security
from .deps import check_enabled, client_address, get_current_user, get_db, unauthorized, user_from_password
from .state import get_state
from .onehop import OneHopRoute
from .models import Token, User

log = logging.getLogger(__name__)
router = APIRouter(prefix=protocol.API_PREFIX, tags=["auth"], route_class=OneHopRoute)


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: StrictStr
    password: StrictStr


@router.post("/auth/login")
def login(body: LoginBody, request: Request, db: Session = Depends(get_db)) -> dict:
    """Exchange a user name and password for a bearer token."""
    user = user_from_password(db, body.username, body.password, client_address(request))
    if user is None:
        raise unauthorized("wrong user name or password")
    check_enabled(user)
    token = security.new_token()
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=get_state(request).settings.token_ttl_s)
    db.add(Token(token_hash=security.token_hash(token), user_id=user.id, expires=expires))
    log.info("user %s logged in", user.username)
    return {"token": token, "username": user.username, "expires": expires.isoformat()}


@router.post("/auth/logout", status_code=204)
def logout(request: Request, user: User = Depends(get_current_user), db: Session = Depends(get_db)) -> Response:
    """Invalidate the bearer token of this request (no-op for Basic auth)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        db.execute(delete(Token).where(Token.token_hash == security.token_hash(token.strip()),
                                       Token.user_id == user.id))
    return Response(status_code=204)


@router.get("/whoami")
def whoami(user: User = Depends(get_current_user)) -> dict:
    """The authenticated user's name."""
    return {"username": user.username, "is_admin": bool(user.is_admin)}


@router.get("/stamp")
def stamp() -> dict:
    """The server's current UTC stamp (no authentication; also the readiness probe)."""
    return {"current_stamp": protocol.now_stamp()}


@router.get("/users")
def users(_user: User = Depends(get_current_user), db: Session = Depends(get_db)) -> dict:
    """All user names (to pick whom to share an object with)."""
    return {"users": list(db.scalars(select(User.username).order_by(User.username)))}


def purge_expired_tokens(state: object) -> int:
    """Delete expired tokens; returns how many."""
    with state.sessionmaker.begin() as db:  # type: ignore[attr-defined]
        result = db.execute(delete(Token).where(Token.expires < dt.datetime.now(dt.timezone.utc)))
        return int(result.rowcount or 0)
