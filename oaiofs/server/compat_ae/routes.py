"""``<root>/api/…``: the Django-style oaio API the unmodified ``ae.oaio_client`` 0.3.19 speaks.

Thin handlers over :mod:`.service` (objects), :mod:`.session` (CSRF + session
cookies) and :mod:`.headers` (``X-OAIO-*`` bytes literals). The protocol is
written down in docs/api.md ("Compatibility with ae.oaio_client").
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.orm import Session

from ... import protocol
from ...errors import InvalidValue, MalformedJson, TooLarge, Unauthorized
from .. import security
from ..deps import check_enabled, get_db, user_from_password
from ..state import get_state
from ..models import Token, User
from . import headers, service, session

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["ae compatibility"])
MAX_BODY_BYTES = protocol.MAX_VALUES_BYTES * 2 + 64 * 1024      # client_values and server_values of one object
CSH_TOKEN_TTL_S = 15 * 60                                       # storage credentials handed out by csh_args/
POST_SLUGS = ("login", "logout", "register", "upload", "delete", "subscribe", "wipe_user")


async def json_body(request: Request) -> Any:
    """The request's JSON body, read with a size cap (413) and parsed (400)."""
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise TooLarge(f"request body is larger than {MAX_BODY_BYTES} bytes", {"limit": MAX_BODY_BYTES})
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks) or b"null")
    except ValueError:
        raise MalformedJson("request body is not valid JSON") from None


def context(request: Request) -> dict[str, str]:
    """The decoded ``X-OAIO-user/-dvc/-app`` headers (400 if one is not a plain bytes literal)."""
    return headers.context(request.headers)


def csrf_checked(request: Request, _ctx: dict = Depends(context)) -> None:
    """POSTs need ``X-CSRFToken`` equal to the ``csrftoken`` cookie (403)."""
    session.check_csrf(request)


def current_user(request: Request, db: Session = Depends(get_db), _ctx: dict = Depends(context)) -> User:
    """The session user (401 without a valid ``sessionid`` cookie)."""
    return session.session_user(request, db)


def _csrf_get(slug: str) -> Any:
    def handler(request: Request, response: Response, _ctx: dict = Depends(context)) -> dict:
        session.ensure_csrf_cookie(request, response)
        return {"detail": f"POST {slug}/ with the X-CSRFToken header"}
    handler.__name__ = f"csrf_{slug}"
    handler.__doc__ = f"CSRF fetch before ``POST {slug}/``: sets the ``csrftoken`` cookie."
    return handler


for _slug in POST_SLUGS:
    router.add_api_route(f"/{_slug}/", _csrf_get(_slug), methods=["GET"])


@router.post("/login/", dependencies=[Depends(csrf_checked)])
def login(request: Request, response: Response, body: Any = Depends(json_body),
          db: Session = Depends(get_db)) -> dict:
    """Check ``{"username", "password"}`` and start a session (cookie ``sessionid``); 401 if wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("username"), str) \
            or not isinstance(body.get("password"), str):
        raise InvalidValue("body must be {'username': str, 'password': str}")
    user = user_from_password(db, body["username"], body["password"])
    if user is None:
        raise Unauthorized("wrong user name or password")
    check_enabled(user)
    session.start_session(db, user, response, get_state(request).settings.token_ttl_s)
    session.rotate_csrf(response)
    log.info("ae client of %s logged in", user.username)
    return {"username": user.username}


@router.post("/logout/", dependencies=[Depends(csrf_checked)])
def logout(request: Request, response: Response, db: Session = Depends(get_db)) -> dict:
    """End the session (answers 200 even without one)."""
    session.end_session(request, db, response)
    return {"message": "logged out"}


@router.get("/current_stamp/")
def current_stamp(_user: User = Depends(current_user)) -> dict:
    """The server's UTC stamp (needs a session: a 401 here makes the client log in again)."""
    return {"current_stamp": protocol.now_stamp()}


@router.get("/oaio_stampz/")
def oaio_stampz(user: User = Depends(current_user), db: Session = Depends(get_db)) -> list:
    """Every object the user may read, as seed ``OaiObject`` dicts (exactly ten keys)."""
    return service.stampz(db, user)


@router.post("/register/", dependencies=[Depends(csrf_checked)])
def register(body: Any = Depends(json_body), ctx: dict = Depends(context), user: User = Depends(current_user),
             db: Session = Depends(get_db)) -> dict:
    """Register a new object (owner: the session user)."""
    return service.register(db, user, body, ctx)


@router.post("/upload/", dependencies=[Depends(csrf_checked)])
def upload(body: Any = Depends(json_body), user: User = Depends(current_user), db: Session = Depends(get_db)) -> dict:
    """Replace the values (and plugin files) with a newer client version (C/D/U; stale stamp 409)."""
    return service.upload(db, user, body)


@router.post("/delete/", dependencies=[Depends(csrf_checked)])
def delete(body: Any = Depends(json_body), user: User = Depends(current_user), db: Session = Depends(get_db)) -> dict:
    """Delete the object (tombstone; C/D)."""
    return service.delete_object(db, user, body)


@router.post("/subscribe/", dependencies=[Depends(csrf_checked)])
def subscribe(body: Any = Depends(json_body), user: User = Depends(current_user),
              db: Session = Depends(get_db)) -> dict:
    """Grant, change or (``x``) remove a subscription → ``{"Pid", "message"}``."""
    return service.subscribe(db, user, body)


@router.get("/user_subz/{oaio_id}")
def user_subz(oaio_id: str, user: User = Depends(current_user), db: Session = Depends(get_db)) -> list:
    """Every registered user with their right to the object (``x``: none)."""
    return service.user_subz(db, user, oaio_id)


@router.get("/csh_args/{csh_id}")
def csh_args(csh_id: str, request: Request, user: User = Depends(current_user), db: Session = Depends(get_db)) -> dict:
    """Constructor kwargs of the storage class ``csh_id``: for ``Oaiofs`` a short-lived token of this user."""
    if csh_id != service.STORAGE_ID:
        raise InvalidValue(f"this server only provides the storage {service.STORAGE_ID!r}", {"csh_id": csh_id[:64]})
    token = security.new_token()
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=CSH_TOKEN_TTL_S)
    db.add(Token(token_hash=security.token_hash(token), user_id=user.id, expires=expires))
    return {"base_url": str(request.base_url).rstrip("/"), "token": token}


@router.post("/wipe_user/", dependencies=[Depends(csrf_checked)])
def wipe_user(body: Any = Depends(json_body), user: User = Depends(current_user),
              db: Session = Depends(get_db)) -> dict:
    """Administrators only (else 403): tombstone a user's objects, drop their subscriptions and sessions."""
    return service.wipe_user(db, user, body)
