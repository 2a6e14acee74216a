"""User administration: list, create, change password, disable/enable, make admin, delete.

Used by ``oaiofs user …`` (directly on the database) and by the admin API
(:mod:`oaiofs.server.routes_admin`, administrators only). Every function runs
inside the caller's transaction.

Deleting a user (documented in docs/drive.md, "Server administration"):

* an object the user created that other users subscribe to is **transferred**: the
  subscriber with the highest right (``D`` > ``U`` > ``r``; the earliest subscription
  on a tie) becomes its creator (``C``) and gets a ``subscribed`` change;
* an object only the user could see is **deleted** with its files (its blobs are left
  to the blob garbage collector);
* the user's subscriptions to other users' objects, tokens, uploads, carts and
  change-feed rows go with the account.
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from .. import protocol
from ..errors import Forbidden, InvalidValue, NotFound
from . import changes, security
from .models import Cart, Change, OaiObject, Subscription, Token, Upload, User

log = logging.getLogger(__name__)

MAX_USERNAME_CHARS = 150
_SUCCESSOR_ORDER = {protocol.DELETE_ACCESS_RIGHT: 0, protocol.UPDATE_ACCESS_RIGHT: 1, protocol.READ_ACCESS_RIGHT: 2}


def validate_username(name: str) -> str:
    """The stripped name, or ``InvalidValue`` (empty, too long, control characters, ``:`` or ``/``)."""
    name = (name or "").strip()
    if (not name or len(name) > MAX_USERNAME_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in name)
            or ":" in name or "/" in name):
        raise InvalidValue(f"invalid user name {name[:50]!r}", {"username": name[:50]})
    return name


def validate_password(password: str) -> str:
    if not isinstance(password, str) or not password:
        raise InvalidValue("the password must not be empty")
    return password


def get_user(db: Session, name: str) -> User:
    user = db.scalar(select(User).where(User.username == name))
    if user is None:
        raise NotFound(f"user {name!r} not found", {"username": name})
    return user


def user_dict(db: Session, user: User) -> dict[str, Any]:
    """What ``oaiofs user list`` shows: name, admin, disabled, created, objects created, subscriptions."""
    owned = db.scalar(select(func.count()).select_from(OaiObject)
                      .where(OaiObject.owner_id == user.id, OaiObject.deleted.is_(None))) or 0
    subs = db.scalar(select(func.count()).select_from(Subscription).where(Subscription.user_id == user.id)) or 0
    return {"username": user.username, "is_admin": bool(user.is_admin), "disabled": bool(user.disabled),
            "created": user.created.isoformat() if user.created else None, "objects": int(owned),
            "subscriptions": int(subs)}


def list_users(db: Session) -> list[dict[str, Any]]:
    return [user_dict(db, u) for u in db.scalars(select(User).order_by(User.username))]


def add_user(db: Session, name: str, password: str, *, is_admin: bool = False) -> User:
    name = validate_username(name)
    validate_password(password)
    if db.scalar(select(User.id).where(User.username == name)) is not None:
        from ..errors import AlreadyExists
        raise AlreadyExists(f"user {name!r} already exists", {"username": name})
    user = User(username=name, password_hash=security.hash_password(password), is_admin=is_admin, disabled=False)
    db.add(user)
    db.flush()
    log.info("user %s created%s", name, " (admin)" if is_admin else "")
    return user


def set_password(db: Session, name: str, password: str) -> User:
    """New password; every token of the user is revoked (other sessions must log in again)."""
    validate_password(password)
    user = get_user(db, name)
    user.password_hash = security.hash_password(password)
    db.execute(delete(Token).where(Token.user_id == user.id))
    log.info("password of %s changed (tokens revoked)", name)
    return user


def set_disabled(db: Session, name: str, disabled: bool, *, actor: User | None = None) -> User:
    """Disable (every request answers 401 ``account_disabled``; tokens are kept for a re-enable) or enable."""
    user = get_user(db, name)
    if disabled and actor is not None and actor.id == user.id:
        raise Forbidden("an administrator cannot disable their own account", {"username": name})
    user.disabled = bool(disabled)
    log.info("user %s %s", name, "disabled" if disabled else "enabled")
    return user


def set_admin(db: Session, name: str, is_admin: bool) -> User:
    user = get_user(db, name)
    user.is_admin = bool(is_admin)
    return user


def delete_user(db: Session, name: str, *, actor: User | None = None) -> dict[str, Any]:
    """Delete the account (see the module doc); returns ``{"transferred": {oaio_id: new owner}, "deleted": [...]}``."""
    user = get_user(db, name)
    if actor is not None and actor.id == user.id:
        raise Forbidden("an administrator cannot delete their own account", {"username": name})
    transferred: dict[str, str] = {}
    deleted: list[str] = []
    for obj in db.scalars(select(OaiObject).where(OaiObject.owner_id == user.id).order_by(OaiObject.id)).all():
        others = db.execute(select(Subscription, User).join(User, User.id == Subscription.user_id)
                            .where(Subscription.object_id == obj.id, Subscription.user_id != user.id)).all()
        if others:
            sub, heir = min(others, key=lambda row: (_SUCCESSOR_ORDER.get(row[0].access_right, 9), row[0].id))
            sub.access_right = protocol.CREATE_ACCESS_RIGHT
            obj.owner_id = heir.id
            db.flush()
            changes.emit(db, obj, protocol.EVENT_SUBSCRIBED, {"access_right": protocol.CREATE_ACCESS_RIGHT},
                         [heir.id])
            transferred[obj.oaio_id] = heir.username
        else:
            db.delete(obj)             # files and subscriptions go with it (ORM + ON DELETE CASCADE)
            deleted.append(obj.oaio_id)
    db.flush()
    for model in (Subscription, Token, Change, Upload, Cart):
        db.execute(delete(model).where(model.user_id == user.id))
    db.delete(user)
    db.flush()
    log.info("user %s deleted: %d objects transferred, %d deleted", name, len(transferred), len(deleted))
    return {"username": name, "transferred": transferred, "deleted": deleted}
