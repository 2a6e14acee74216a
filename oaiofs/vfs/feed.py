"""ChangeFeed: keeps the namespace fresh by long-polling the server's change feed.

One background thread asks ``api.changes(cursor, wait=...)``; for every object an
event names it refetches that object (``get_object``) and puts the document into
the namespace, or drops the object when it is gone or no longer visible; ``updated``
events the namespace's document already shows (the echo of this mount's own commits) are
not fetched again, and neither, for a few seconds, are those of an object the journal is still
writing: the answers to its ops bring the newer document (checked again on the next rounds,
refetched if it did not come). When the
server was unreachable, the first successful call after that re-lists everything
(one ``list_objects``), so nothing missed while offline stays stale. The listing
and cursor are persisted (``ListingStore``) so a mount can start offline.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from .. import protocol
from ..errors import Gone, NotFound, OaioError, Unauthorized, Unavailable
from .cache import Cache
from .namespace import Namespace
from .seams import ServerApi

log = logging.getLogger(__name__)

LONG_POLL_S = 20.0
RETRY_MIN_S, RETRY_MAX_S = 0.5, 15.0
PERSIST_EVERY_S = 2.0
DEFER_MAX_S = 5.0          # how long an event may wait for the journal's answer before it is fetched
DEFER_POLL_S = 1.0         # the long-poll wait while events wait so (they are checked each round)


class ListingStore:
    """The last listing + cursor in the cache folder (JSON, replaced atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def save(self, docs: list[dict[str, Any]], cursor: int, identity: dict[str, str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"identity": identity, "cursor": cursor, "objects": docs, "saved": time.time()}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def load(self, identity: dict[str, str]) -> tuple[list[dict[str, Any]], int] | None:
        """The saved listing for this server+user, or None."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError):
            return None
        if doc.get("identity") != identity:
            return None
        return doc["objects"], int(doc["cursor"])


class ChangeFeed:
    """The background thread applying server changes to the namespace."""

    def __init__(self, api: ServerApi, namespace: Namespace, cache: Cache, store: ListingStore,
                 identity: dict[str, str], *, long_poll_s: float = LONG_POLL_S,
                 on_change: Callable[[str], None] | None = None,
                 busy: Callable[[str], bool] | None = None) -> None:
        self.api = api
        self.ns = namespace
        self.cache = cache
        self.store = store
        self.identity = identity
        self.long_poll_s = long_poll_s
        self.on_change = on_change or (lambda oaio_id: None)
        self.cursor = 0
        self.online = False
        self.refused: str | None = None      # why the server refuses our login (disabled account, new password)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dirty_since = 0.0
        self._refresh: set[str] = set()
        self._busy = busy or (lambda oaio_id: False)     # the journal has ops of this object in flight
        self._deferred: dict[str, tuple[int, float]] = {}   # oaio_id -> (event version, since when)
        self._lock = threading.Lock()

    # --- start-up ---
    def initial_listing(self) -> bool:
        """Fill the namespace: from the server (True), else from the saved listing (False).

        Raises the server's error (e.g. ``Unauthorized``) unless it is ``Unavailable``
        and a saved listing exists.
        """
        try:
            self._relist()
            return True
        except Unavailable:
            saved = self.store.load(self.identity)
            if saved is None:
                raise
            docs, self.cursor = saved
            self.ns.load(docs)
            self.online = False
            return False

    def _relist(self) -> None:
        mark = self.ns.doc_mark()
        docs, cursor = self.api.list_objects()
        self.ns.load(docs, since=mark)
        self.cursor = cursor
        self.online = True
        self._persist()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="oaiofs-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=0.5)     # a long poll in flight is abandoned (daemon thread)
        if self._dirty_since:
            self._persist()

    def refresh(self, oaio_id: str) -> None:
        """Refetch this object on the next round (e.g. after a conflict)."""
        with self._lock:
            self._refresh.add(oaio_id)

    # --- the loop ---
    def _run(self) -> None:
        delay = RETRY_MIN_S
        need_relist = not self.online
        while not self._stop.is_set():
            try:
                if need_relist:
                    self._relist()
                    need_relist = False
                    log.warning("server reachable: the mount is online")
                wait = min(self.long_poll_s, DEFER_POLL_S) if self._deferred else self.long_poll_s
                events, cursor = self.api.changes(self.cursor, wait=wait)
                self.online = True
                if self.refused:
                    log.warning("the server accepts our login again: the mount is writable")
                    self.refused = None
                delay = RETRY_MIN_S
                with self._lock:
                    known = self._known(events) - self._refresh
                    due = set(self._due())
                    ids = list(dict.fromkeys([e.get("subject") or e.get("data", {}).get("oaio_id")
                                              for e in events] + sorted(self._refresh) + sorted(due)))
                    self._refresh.clear()
                ids = [oaio_id for oaio_id in ids if oaio_id not in known or oaio_id in due]
                for oaio_id in ids:
                    if oaio_id:
                        self._refetch(oaio_id)
                self.cursor = cursor
                if ids:
                    self._dirty_since = self._dirty_since or time.monotonic()
                if self._dirty_since and time.monotonic() - self._dirty_since > PERSIST_EVERY_S:
                    self._persist()
            except Unavailable as exc:
                if self.online:
                    log.warning("server unreachable (%s): the mount is offline; retrying", exc.message)
                self.online = False
                need_relist = True
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            except Unauthorized as exc:
                if self.refused is None:
                    log.warning("the server refuses our login (%s): the mount is read-only and offline; "
                                "retrying", exc.message)
                self.refused = exc.message
                self.online = False
                need_relist = True
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            except OaioError as exc:
                log.warning("change feed error (%s); re-listing", exc)
                need_relist = True
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            except Exception:  # noqa: BLE001 - the feed must survive a bug in one event
                log.exception("change feed failed; re-listing")
                need_relist = True
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _known(self, events: list[dict[str, Any]]) -> set[str]:
        """Objects whose events are only ``updated`` ones this mount's document already shows (its
        version is at least theirs; issue 16: the echo of the mount's own commits is not fetched
        again), or that the journal is still writing (deferred: see :meth:`_due`)."""
        newest: dict[str, int] = {}
        other: set[str] = set()
        for e in events:
            data = e.get("data") or {}
            oaio_id = e.get("subject") or data.get("oaio_id")
            if not oaio_id:
                continue
            if e.get("type") != protocol.EVENT_UPDATED or not isinstance(data.get("version"), int):
                other.add(oaio_id)
            else:
                newest[oaio_id] = max(newest.get(oaio_id, 0), data["version"])
        known = set()
        for oaio_id, version in newest.items():
            doc = self.ns.doc(oaio_id)
            if oaio_id in other or doc is None:
                continue
            if int(doc.get("version", 0)) >= version:
                known.add(oaio_id)
            elif self._busy(oaio_id):           # most likely the echo of an op whose answer is on its way
                waiting, since = self._deferred.get(oaio_id, (0, time.monotonic()))
                self._deferred[oaio_id] = (max(version, waiting), since)
                known.add(oaio_id)
        return known

    def _due(self) -> list[str]:
        """Deferred objects to fetch now: the journal's answer did not bring their event's version,
        and the journal is done with them or they waited :data:`DEFER_MAX_S`."""
        due, now = [], time.monotonic()
        for oaio_id, (version, since) in list(self._deferred.items()):
            doc = self.ns.doc(oaio_id)
            if doc is not None and int(doc.get("version", 0)) >= version:
                del self._deferred[oaio_id]
            elif now - since > DEFER_MAX_S or not self._busy(oaio_id):
                del self._deferred[oaio_id]
                due.append(oaio_id)
        return due

    def _refetch(self, oaio_id: str) -> None:
        try:
            doc = self.api.get_object(oaio_id)
        except (NotFound, Gone):
            log.info("%s is gone or no longer shared with us", oaio_id)
            self.ns.drop(oaio_id)
            if self.ns.view(oaio_id) is None:       # no local changes pending for it either
                self.cache.remove(oaio_id)
        else:
            self.ns.put_doc(doc)
        self.on_change(oaio_id)

    def _persist(self) -> None:
        try:
            self.store.save(self.ns.docs(), self.cursor, self.identity)
            self._dirty_since = 0.0
        except OSError as exc:
            log.warning("cannot save the listing to %s: %s", self.store.path, exc)
