"""The subscription service: who has which right to an object.

Rights (seed ``ae.oaio_model``): ``C`` creator (everything), ``D`` delete and
update, ``U`` update, ``r`` read; ``x`` removes a subscription. Only the
creator manages other users' subscriptions; ``C`` cannot be granted; any
subscriber except the creator may remove their own subscription.
"""
from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import protocol
from ..errors import Forbidden, InvalidValue, NotFound
from . import changes
from .access import load_object
from .models import OaiObject, Subscription, User

log = logging.getLogger(__name__)


def list_subscriptions(db: Session, user: User, oaio_id: str) -> list[dict[str, str]]:
    """Users and rights of an object, sorted like the seed's ``userz_access`` (right, then name)."""
    obj, _right = load_object(db, user, oaio_id, "read")
    rows = db.execute(select(User.username, Subscription.access_right)
                      .join(Subscription, Subscription.user_id == User.id)
                      .where(Subscription.object_id == obj.id)).all()
    entries = [{"username": name, "access_right": right} for name, right in rows]
    return sorted(entries, key=protocol.userz_access_sort_key)


def _validate_right(access_right: str) -> str:
    if access_right not in (*protocol.ACCESS_RIGHTS, protocol.NO_ACCESS_RIGHT):
        raise InvalidValue("access_right must be one of C, D, U, r or x", {"access_right": str(access_right)[:10]})
    return access_right


def set_subscription(db: Session, user: User, oaio_id: str, username: str, access_right: str) -> dict[str, object]:
    """Grant, change or (``x``) remove ``username``'s right; returns ``{"pid", "access_right"}``."""
    _validate_right(access_right)
    obj, my_right = load_object(db, user, oaio_id, "read", for_update=True)
    target = db.scalar(select(User).where(User.username == username))
    if target is None:
        raise NotFound(f"user {username!r} not found", {"username": username})
    if target.id == user.id:
        return _change_own(db, user, obj, my_right, access_right)
    if my_right != protocol.CREATE_ACCESS_RIGHT:
        raise Forbidden("only the creator manages the subscriptions of other users",
                        {"oaio_id": oaio_id, "access_right": my_right})
    if access_right == protocol.CREATE_ACCESS_RIGHT:
        raise InvalidValue("the creator right 'C' cannot be granted", {"access_right": access_right})
    sub = db.scalar(select(Subscription).where(Subscription.object_id == obj.id, Subscription.user_id == target.id))
    if access_right == protocol.NO_ACCESS_RIGHT:
        return _remove(db, user, obj, target, sub)
    if sub is None:
        sub = Subscription(object_id=obj.id, user_id=target.id, access_right=access_right)
        db.add(sub)
    elif sub.access_right == access_right:
        return {"pid": sub.id, "access_right": access_right}
    else:
        sub.access_right = access_right
    db.flush()
    changes.emit(db, obj, protocol.EVENT_SUBSCRIBED, {"access_right": access_right}, [target.id], actor=user)
    log.info("%s granted %r on %r to %s", user.username, access_right, obj.oaio_id, target.username)
    return {"pid": sub.id, "access_right": access_right}


def _change_own(db: Session, user: User, obj: OaiObject, my_right: str, access_right: str) -> dict[str, object]:
    if access_right == my_right:
        sub = db.scalar(select(Subscription).where(Subscription.object_id == obj.id, Subscription.user_id == user.id))
        return {"pid": sub.id if sub else 0, "access_right": my_right}
    if my_right == protocol.CREATE_ACCESS_RIGHT:
        raise Forbidden("the creator cannot give up or change their own subscription", {"oaio_id": obj.oaio_id})
    if access_right != protocol.NO_ACCESS_RIGHT:
        raise Forbidden("only the creator can change access rights", {"oaio_id": obj.oaio_id})
    sub = db.scalar(select(Subscription).where(Subscription.object_id == obj.id, Subscription.user_id == user.id))
    return _remove(db, user, obj, user, sub)


def _remove(db: Session, actor: User, obj: OaiObject, target: User, sub: Subscription | None) -> dict[str, object]:
    if sub is not None:
        changes.emit(db, obj, protocol.EVENT_UNSUBSCRIBED, {"access_right": protocol.NO_ACCESS_RIGHT},
                     [target.id], actor=actor)
        db.delete(sub)
        db.flush()
        log.info("%s removed %s from %r", actor.username, target.username, obj.oaio_id)
    return {"pid": 0, "access_right": protocol.NO_ACCESS_RIGHT}
