"""The change feed: ``emit`` rows inside a transaction, ``fetch`` them as CloudEvents, long-poll.

Every change is stored as one :class:`~oaiofs.server.models.Change` row per
recipient; its id is the feed cursor. A long-poll waits on the in-process
:class:`Notifier` (woken after the commit of a transaction that emitted) and
also re-reads the table every :data:`POLL_INTERVAL_S`, so changes written by
other server processes sharing the database are seen too.

On PostgreSQL ``emit`` takes a transaction-level advisory lock first, so change
ids are handed out in commit order and a reader's cursor never skips a change
that commits late.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import threading
from typing import Any, Iterable, Iterator

from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session

from .. import protocol
from . import subscriber_cache
from .models import Change, OaiObject, Subscription, User

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5
EVENT_SOURCE = "/oaiofs/objects"
_PENDING_FLAG = "oaiofs_changes_pending"
_ADVISORY_LOCK_KEY = 0x0A10F5   # any constant shared by all oaiofs servers


class Notifier:
    """Wakes long-polls of this process; ``notify`` may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    @contextlib.contextmanager
    def listen(self) -> Iterator[asyncio.Event]:
        """An event set by the next :meth:`notify` (register before reading, then wait)."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                self._waiters.discard(entry)

    def notify(self) -> None:
        """Wake every current listener."""
        with self._lock:
            waiters = list(self._waiters)
        for loop, ev in waiters:
            with contextlib.suppress(RuntimeError):   # loop already closed
                loop.call_soon_threadsafe(ev.set)


def _after_commit(session: Session) -> None:
    if session.info.pop(_PENDING_FLAG, False):
        notifier = session.info.get("notifier")
        if notifier is not None:
            notifier.notify()


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_FLAG, None)


event.listen(Session, "after_commit", _after_commit)
event.listen(Session, "after_rollback", _after_rollback)


def subscriber_ids(db: Session, obj: OaiObject) -> list[int]:
    """Ids of every user currently subscribed to ``obj`` (remembered by the locked load of ``obj``)."""
    cached = subscriber_cache.recall(db, obj.id)
    if cached is not None:
        return list(cached)
    return list(db.scalars(select(Subscription.user_id).where(Subscription.object_id == obj.id)))


def _serialize_emits(db: Session) -> None:
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})


_COALESCE = "oaiofs_changes_coalesce"


@contextlib.contextmanager
def coalesced(db: Session) -> Iterator[None]:
    """Inside: ``updated`` events to all subscribers are merged per object and emitted once at the end
    (a batch of file commits makes one event naming every changed path, at the final version)."""
    if db.info.get(_COALESCE) is not None:
        yield
        return
    pending: dict[int, tuple[OaiObject, User | None, dict[str, Any]]] = {}
    db.info[_COALESCE] = pending
    try:
        yield
    finally:
        db.info.pop(_COALESCE, None)      # on an error nothing is emitted: the transaction rolls back
    for obj, actor, merged in pending.values():
        data: dict[str, Any] = {"values_changed": merged["values_changed"]}
        if merged["changed"]:
            data["changed_files"] = sorted(merged["changed"])
        if merged["removed"]:
            data["removed_files"] = sorted(merged["removed"])
        emit(db, obj, protocol.EVENT_UPDATED, data, actor=actor)


def _coalesce(db: Session, obj: OaiObject, event_type: str, data: dict[str, Any] | None,
              recipients: Iterable[int] | None, actor: User | None) -> bool:
    pending = db.info.get(_COALESCE)
    if pending is None or event_type != protocol.EVENT_UPDATED or recipients is not None:
        return False
    data = data or {}
    key = id(obj)
    if key in pending and pending[key][1] is not actor:
        return False
    _obj, _actor, merged = pending.setdefault(key, (obj, actor, {"values_changed": False, "changed": set(),
                                                                  "removed": set()}))
    merged["values_changed"] = merged["values_changed"] or bool(data.get("values_changed"))
    for path in data.get("removed_files") or ():
        merged["changed"].discard(path)
        merged["removed"].add(path)
    for path in data.get("changed_files") or ():
        merged["removed"].discard(path)
        merged["changed"].add(path)
    return True


def emit(db: Session, obj: OaiObject, event_type: str, data: dict[str, Any] | None = None,
         recipients: Iterable[int] | None = None, *, actor: User | None = None) -> None:
    """Record ``event_type`` about ``obj`` for ``recipients`` (default: its subscribers).

    Runs inside the caller's transaction; listeners are woken after the commit.
    """
    if event_type not in protocol.EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    if _coalesce(db, obj, event_type, data, recipients, actor):
        return
    user_ids = sorted(set(subscriber_ids(db, obj) if recipients is None else recipients))
    if not user_ids:
        return
    payload = {"oaio_id": obj.oaio_id, "version": obj.version, "stamp": obj.stamp}
    if actor is not None:
        payload["actor"] = actor.username
    payload.update(data or {})
    body = json.dumps(payload, ensure_ascii=False)
    _serialize_emits(db)
    now = dt.datetime.now(dt.timezone.utc)
    db.add_all(Change(user_id=uid, oaio_id=obj.oaio_id, type=event_type, time=now, data_json=body)
               for uid in user_ids)
    db.flush()
    db.info[_PENDING_FLAG] = True


def current_cursor(db: Session) -> int:
    """The newest cursor; read it *before* a listing so the feed continues without a gap."""
    return int(db.scalar(select(func.max(Change.id))) or 0)


def _iso(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def cloud_event(change: Change) -> dict[str, Any]:
    """A change row as a CloudEvents 1.0 JSON record."""
    return {
        "specversion": "1.0",
        "id": str(change.id),
        "source": EVENT_SOURCE,
        "type": change.type,
        "subject": change.oaio_id,
        "time": _iso(change.time),
        "datacontenttype": "application/json",
        "data": json.loads(change.data_json or "{}"),
    }


def fetch(db: Session, user_id: int, cursor: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Events for ``user_id`` after ``cursor`` (oldest first) and the cursor to continue from."""
    rows = list(db.scalars(select(Change).where(Change.user_id == user_id, Change.id > cursor)
                           .order_by(Change.id).limit(limit)))
    if rows:
        return [cloud_event(row) for row in rows], rows[-1].id
    # a cursor beyond every change comes from another (e.g. re-created) database: continue from here
    return [], min(cursor, current_cursor(db))
