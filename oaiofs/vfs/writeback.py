"""WriteBack: the mount's side of the journal — handing changes over and learning their fate.

It remembers which cache item (and write generation) each ``put_file`` op
snapshotted, so the item turns clean with the server's version when the op is
applied (unless it was written again meanwhile); the newest op per path, so
``fsync`` knows what to wait for; and the ops already reported applied, which the
namespace's overlay must no longer replay even while the journal still lists them.

Locking: ``_lock`` guards the bookkeeping and is held around ``journal.submit``
(a local fsync, no network) so an op's callback cannot overtake its registration.
It is taken after ``Item.cond`` is released and never while holding the namespace lock.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from ..client.uploads import file_sha256
from ..errors import OaioError, Unavailable, error_from_response
from .cache import Cache, Item, ItemKey
from .namespace import Namespace
from .opstore import Op
from .stream_upload import SequentialWrites

log = logging.getLogger(__name__)

FSYNC_TIMEOUT_S = 600.0
OFFLINE_FSYNC_WAIT_S = 5.0       # offline, fsync reports EIO soon (the change stays queued)
APPLIED_PRUNE_AT = 10_000


class JournalLike(Protocol):
    """What the drive needs from ``vfs.journal.Journal``."""

    def submit(self, op: Op, data_source: Any = None, stream: Any = None) -> Op: ...
    def wait(self, op: Op, timeout: float | None = None) -> Op: ...
    def pending(self, oaio_id: str | None = None) -> list[Op]: ...
    def status(self) -> dict[str, Any]: ...


class WriteBack:
    """Submits the mount's changes to the journal and applies the journal's reports."""

    def __init__(self, journal: JournalLike, namespace: Namespace, cache: Cache) -> None:
        self.journal = journal
        self.ns = namespace
        self.cache = cache
        self._lock = threading.Lock()
        self._snapshots: dict[int, tuple[ItemKey, int]] = {}    # put_file op id -> (item key, write_gen)
        self._last_op: dict[ItemKey, Op] = {}                   # newest op per (oaio_id, path)
        self._applied: frozenset[int] = frozenset()             # replaced, never mutated: read lock-free
        # files written sequentially from offset 0 start uploading while still open
        self.streams = SequentialWrites(journal) if hasattr(journal, "begin_stream") else None

    # --- uploading while a file is written ---
    def wrote(self, item: Item, base_version: int | None, offset: int, length: int) -> None:
        """A write landed in ``item``: feed (or start, or spoil) its upload-while-writing stream."""
        if self.streams is not None:
            oaio_id, path = item.key
            self.streams.wrote(item.key, oaio_id, path, base_version, item.data_path, offset, length)

    def changed(self, key: ItemKey) -> None:
        """The file changed other than by appending (truncate, rename): stop streaming it."""
        if self.streams is not None:
            self.streams.changed(key)

    def pending_ops(self, oaio_id: str | None) -> list[Op]:
        """The journal's not-yet-applied ops (the namespace's overlay source)."""
        ops = self.journal.pending(oaio_id)
        applied = self._applied
        return [op for op in ops if op.id not in applied] if applied else ops

    # --- handing over ---
    def submit(self, op: Op, key: ItemKey | None = None) -> Op:
        """Queue a metadata op (durable when this returns)."""
        with self._lock:
            op = self.journal.submit(op)
            self._last_op[key or (op.oaio_id, op.path)] = op
        self.ns.local_changed(op.oaio_id)
        return op

    def submit_file(self, item: Item, base_version: int | None) -> Op | None:
        """Snapshot a changed file into the journal (before the release that calls this returns)."""
        stream = self.streams.take(item.key) if self.streams is not None else None
        if not item.dirty or item.detached:
            if stream is not None:
                stream.abort()
            if item.detached:
                log.debug("%s/%s was removed while open; not uploaded", *item.key)
                self.ns.clear_open_file(*item.key)
            return None
        oaio_id, path = item.key
        sha256 = item.finish_hash()
        # base 0 = "must not exist yet" for new files; the journal rebases chained ops
        op = Op("put_file", oaio_id, path, size=item.size, sha256=sha256, mtime=time.time(),
                base_version=base_version)
        with self._lock:
            op = self.journal.submit(op, item.data_path, stream=stream)
            item.linked = True              # the journal holds a hard link: copy before the next write
            self._snapshots[op.id] = (item.key, item.write_gen)
            self._last_op[item.key] = op
            self.cache.persist(item)
        self.ns.clear_open_file(oaio_id, path)
        self.ns.local_changed(oaio_id)
        return op

    def track(self, op: Op, item: Item) -> None:
        """``item`` holds the bytes of the pending ``op`` (re-read from the journal)."""
        with self._lock:
            self._snapshots[op.id] = (item.key, item.write_gen)

    def moved(self, oaio_id: str, src: str, dst: str) -> None:
        self.changed((oaio_id, src))
        with self._lock:
            if (oaio_id, src) in self._last_op:
                self._last_op[(oaio_id, dst)] = self._last_op.pop((oaio_id, src))

    def wait(self, key: ItemKey, op: Op | None = None) -> None:
        """fsync: block until ``op`` (default: the newest op of ``key``) is on the server, or raise."""
        op = op or self._last_op.get(key)
        if op is None:
            return
        online = getattr(self.journal, "online", True)
        try:
            done = self.journal.wait(op, timeout=FSYNC_TIMEOUT_S if online else OFFLINE_FSYNC_WAIT_S)
        except TimeoutError:
            raise Unavailable(f"{key[1]}: saved locally and queued, but the server "
                              f"{'is unreachable' if not online else 'did not confirm it in time'}") from None
        if done.state == "failed":
            code, _, message = done.error.partition(": ")
            raise error_from_response(0, {"error": code, "message": f"{key[1]}: not saved on the server: "
                                                                    f"{message or done.error}"})
        if done.state == "conflict":
            raise Unavailable(f"{key[1]}: changed elsewhere; your bytes were saved as a conflict copy")

    def recover(self) -> int:
        """Start-up: hand the journal local bytes it never got (the mount died with the file open).

        Bytes the server already has are just marked clean. Returns how many files were submitted.
        """
        queued = {(op.oaio_id, op.path): op for op in self.journal.pending(None) if op.kind == "put_file"}
        submitted = 0
        for key, rec in self.cache.dirty_records():
            data = self.cache.data_dir / rec["token"]
            last = queued.get(key)
            if last is not None and (rec.get("sha256") == last.sha256 or not data.exists()):
                # the queued upload holds these bytes: the record turns clean (or is dropped, on a
                # conflict) when it is applied, as if this process had submitted it (issue 12 item 4)
                with self._lock:
                    self._snapshots[last.id] = (key, rec.get("write_gen", 0))
                    self._last_op[key] = last
                continue
            if not data.exists():
                continue
            sha = file_sha256(data)
            if last is not None and sha == last.sha256:
                self.cache.repair_record(key, data.stat().st_size, sha)
                with self._lock:
                    self._snapshots[last.id] = (key, rec.get("write_gen", 0))
                    self._last_op[key] = last
                continue
            self.cache.repair_record(key, data.stat().st_size, sha)
            view = self.ns.view(key[0])
            entry = view.entries.get(key[1]) if view is not None else None
            if entry is not None and entry.sha256 == sha:
                self.cache.mark_clean_key(key, entry.version, sha, rec.get("write_gen", 0))
                continue
            if view is None or not view.writable:
                log.warning("%s/%s: unsaved local bytes kept in %s (object gone or read-only)", *key, data)
                continue
            op = Op("put_file", key[0], key[1], size=data.stat().st_size, sha256=sha, mtime=time.time(),
                    base_version=rec.get("version") or None)
            with self._lock:
                op = self.journal.submit(op, data)
                self._snapshots[op.id] = (key, rec.get("write_gen", 0))
            log.warning("%s/%s: local changes from an interrupted mount queued for upload", *key)
            submitted += 1
        if submitted:
            self.ns.local_changed(None)
        return submitted

    # --- journal callbacks ---
    def on_applied(self, op: Op, doc: dict[str, Any] | None) -> None:
        """``op`` is on the server; ``doc`` is the object after it."""
        # the server's document first, only then stop replaying the op: in between, a view rebuilt
        # by another thread would show neither (a folder made here vanished for a moment: issue 12)
        if doc is not None:
            self.ns.put_doc(doc)
        self._mark_applied(op)
        if doc is None and op.kind == "delete_object":
            self.ns.drop(op.oaio_id)
        if op.kind == "put_file":
            with self._lock:
                snapshot = self._snapshots.pop(op.id, None)
            version = op.result_version
            if version is None and doc is not None:
                version = next((f["version"] for f in doc.get("files", []) if f["path"] == op.path), None)
            if snapshot is not None and version is not None:
                key, gen = snapshot
                self.cache.mark_clean_key(key, version, op.sha256, gen)
        with self._lock:
            for key in [k for k, last in self._last_op.items() if last.id == op.id]:
                del self._last_op[key]                  # fsync after this has nothing to wait for
        self.ns.local_changed(op.oaio_id)

    def on_conflict(self, op: Op, conflict_copy: str) -> None:
        log.warning("%s/%s changed elsewhere too; the local version was saved as %s",
                    op.oaio_id, op.path or "values.json", conflict_copy)
        if op.kind == "put_file":
            with self._lock:
                snapshot = self._snapshots.pop(op.id, None)
            if snapshot is not None:
                self.cache.drop_if_unchanged(*snapshot)   # the server's version shows under the name
        self.ns.local_changed(op.oaio_id)

    def on_failed(self, op: Op, err: OaioError) -> None:
        log.warning("%s of %s/%s failed permanently (%s); local bytes kept", op.kind, op.oaio_id,
                    op.path, err.message)
        self.ns.local_changed(op.oaio_id)

    def _mark_applied(self, op: Op) -> None:
        with self._lock:
            applied = self._applied
            if len(applied) > APPLIED_PRUNE_AT:
                still = {o.id for o in self.journal.pending(None)}
                applied = frozenset(i for i in applied if i in still)
            self._applied = applied | {op.id}
