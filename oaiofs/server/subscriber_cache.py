"""The subscribers of an object, remembered for the rest of one transaction.

A write loads its object locked together with every subscription of it in one
query (:func:`oaiofs.server.access.load_visible`); :func:`remember` keeps those
user ids in ``Session.info`` so that :func:`oaiofs.server.changes.emit` needs no
query of its own. The entry is only as good as the transaction that read it, so
everything that could change a subscription forgets it at once:

* a flush that writes, changes or deletes a :class:`Subscription` row;
* any bulk ``INSERT``/``UPDATE``/``DELETE`` or text statement run through the session;
* the end of the transaction (commit or rollback).

Another transaction cannot change the subscriptions meanwhile: every subscription
change takes the same object lock first (``load_object(..., for_update=True)``).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from .models import Subscription

_KEY = "oaiofs_subscribers"


def remember(db: Session, object_id: int, user_ids: list[int]) -> None:
    """``user_ids`` are every subscriber of object ``object_id`` as this transaction sees it."""
    db.info.setdefault(_KEY, {})[object_id] = user_ids


def recall(db: Session, object_id: int) -> list[int] | None:
    """The remembered subscribers of ``object_id``, or None (then read them).

    None too while a subscription change is pending (added but not flushed yet).
    """
    cached = db.info.get(_KEY)
    if cached is None or object_id not in cached or _touches_subscriptions(db):
        return None
    return cached[object_id]


def forget(db: Session) -> None:
    """Drop everything remembered by ``db``."""
    db.info.pop(_KEY, None)


def _touches_subscriptions(session: Session) -> bool:
    return any(isinstance(obj, Subscription) for group in (session.new, session.dirty, session.deleted)
               for obj in group)


def _after_flush(session: Session, _context: Any) -> None:
    if _KEY in session.info and _touches_subscriptions(session):
        forget(session)


def _on_execute(state: ORMExecuteState) -> None:
    if _KEY in state.session.info and not state.is_select:
        forget(state.session)


def _on_end(session: Session, *_args: Any) -> None:
    forget(session)


event.listen(Session, "after_flush", _after_flush)
event.listen(Session, "do_orm_execute", _on_execute)
event.listen(Session, "after_commit", _on_end)
event.listen(Session, "after_rollback", _on_end)
