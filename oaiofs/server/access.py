"""Who may see and change an object: every service call goes through :func:`load_object`.

Strangers (no subscription) get 404 so that ids of other users' objects do not
leak; a subscriber whose right is too small gets 403; a deleted object answers
410 unless the caller asked for tombstones (``allow_deleted``).
"""
from __future__ import annotations

from typing import Literal

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from .. import protocol
from ..errors import Forbidden, Gone, NotFound
from . import db as dbmod
from . import subscriber_cache
from .models import OaiObject, Subscription, User

Need = Literal["read", "update", "delete", "owner"]


def right_allows(right: str, need: Need) -> bool:
    """True if the access ``right`` is enough for ``need``."""
    if need == "read":
        return right in protocol.ACCESS_RIGHTS
    if need == "update":
        return protocol.can_update(right)
    if need == "delete":
        return protocol.can_delete(right)
    return right == protocol.CREATE_ACCESS_RIGHT


def user_right(db: Session, user: User, obj: OaiObject) -> str | None:
    """The caller's access right to ``obj`` (None if not subscribed)."""
    return db.scalar(select(Subscription.access_right)
                     .where(Subscription.object_id == obj.id, Subscription.user_id == user.id))


def load_visible(db: Session, user: User, oaio_id: str, *, for_update: bool = False) -> tuple[OaiObject, str]:
    """The object ``oaio_id`` (deleted or not) and the caller's right; not subscribed → ``NotFound``.

    ``for_update=True`` takes the write lock (SQLite) / locks the object row (``SELECT … FOR UPDATE``).
    """
    protocol.validate_oaio_id(oaio_id)
    if for_update:
        dbmod.lock_for_write(db)
        return _load_locked(db, user, oaio_id)
    row = db.execute(select(OaiObject, Subscription.access_right)          # one query: object and right
                     .join(Subscription, and_(Subscription.object_id == OaiObject.id,
                                              Subscription.user_id == user.id))
                     .where(OaiObject.oaio_id == oaio_id)).first()
    if row is None:
        raise NotFound(f"object {oaio_id!r} not found", {"oaio_id": oaio_id})
    return row[0], row[1]


def _load_locked(db: Session, user: User, oaio_id: str) -> tuple[OaiObject, str]:
    """The locked object and the caller's right, with every subscription in the same query.

    The subscribers are remembered for this transaction (:mod:`.subscriber_cache`), so
    the change event of the write that follows needs no query of its own.
    """
    rows = db.execute(select(OaiObject, Subscription.user_id, Subscription.access_right)
                      .join(Subscription, Subscription.object_id == OaiObject.id)
                      .where(OaiObject.oaio_id == oaio_id)
                      .with_for_update(of=OaiObject).execution_options(populate_existing=True)).all()
    right = next((r for _obj, uid, r in rows if uid == user.id), None)
    if right is None:
        raise NotFound(f"object {oaio_id!r} not found", {"oaio_id": oaio_id})
    obj = rows[0][0]
    subscriber_cache.remember(db, obj.id, [uid for _obj, uid, _r in rows])
    return obj, right


def load_object(db: Session, user: User, oaio_id: str, need: Need = "read", *, for_update: bool = False,
                allow_deleted: bool = False) -> tuple[OaiObject, str]:
    """Load ``oaio_id`` for ``user`` and check that their right covers ``need``.

    ``for_update=True`` takes the write lock (SQLite) / locks the object row
    (``SELECT … FOR UPDATE``) so that the version check and the change that
    follows are atomic across server processes.
    """
    obj, right = load_visible(db, user, oaio_id, for_update=for_update)
    if obj.deleted is not None and not (allow_deleted and need == "read"):
        raise Gone(f"object {oaio_id!r} was deleted", {"oaio_id": oaio_id, "version": obj.version})
    if not right_allows(right, need):
        raise Forbidden(f"access right {right!r} does not allow to {need} object {oaio_id!r}",
                        {"oaio_id": oaio_id, "access_right": right, "need": need})
    return obj, right
