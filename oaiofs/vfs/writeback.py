"""WriteBack: the mount's side of the journal — handing changes over and learning their fate.

It remembers which cache item (and write generation) each ``put_file`` op
snapshotted, so the item turns clean with the server's version when the op is
applied (unless it was written again meanwhile: then only its base version
advances); the newest op per path, so ``fsync`` can report a failed upload; and the
ops already reported applied, which the namespace's overlay must no longer replay
even while the journal still lists them.

One writer is one history (docs/drive.md, "Consistency"): a ``put_file`` is based on
``Item.version``, the server version the local bytes descend from, which advances
with this mount's own commits (``on_applied``). A snapshot submitted while an older
one is still queued is rebased by the journal's chaining; one submitted after the
older one was applied reads the advanced version. ``_lock`` makes these two cases
exhaustive: it is held while the base is read and the op submitted, and while
``on_applied`` advances the version (the journal rebases queued ops after that
callback returns).

Locking: ``_lock`` guards the bookkeeping and is held around ``journal.submit``
(a local fsync, no network) so an op's callback cannot overtake its registration.
Order: ``Item.write_lock`` → ``_meta_lock`` → ``_lock`` → ``Cache._lock`` → ``Item.cond``;
``_lock`` is never taken while holding the namespace lock. ``_meta_lock`` makes
"chmod/utimens of a file being released" atomic with its ``put_file`` snapshot: the change
goes with the upload or after it.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Protocol

from ..hashing import file_sha256
from ..errors import OaioError, error_from_response
from .cache import Cache, Item, ItemKey
from .namespace import Namespace
from .opstore import INLINE_MAX_BYTES, Op
from .stream_upload import SequentialWrites

log = logging.getLogger(__name__)

APPLIED_PRUNE_AT = 256        # ids kept after pruning are only those the journal still lists: a few


class JournalLike(Protocol):
    """What the drive needs from ``vfs.journal.Journal``."""

    def submit(self, op: Op, data_source: Any = None, stream: Any = None) -> Op: ...
    def wait(self, op: Op, timeout: float | None = None) -> Op: ...
    def pending(self, oaio_id: str | None = None) -> list[Op]: ...
    def status(self) -> dict[str, Any]: ...
    def amend_meta(self, op_id: int, mode: int | None, mtime_ns: int | None) -> bool: ...


Snapshot = tuple[ItemKey, int, str]          # (key, write_gen, history) of a put_file's bytes


class Snapshots:
    """put_file op id -> the snapshot it uploads, and how many queued snapshots each (key,
    write_gen) has: "are these very bytes queued already?" is O(1), not O(queued uploads)."""

    def __init__(self) -> None:
        self._by_op: dict[int, Snapshot] = {}
        self._queued: dict[tuple[ItemKey, int], int] = {}

    def __setitem__(self, op_id: int, snapshot: Snapshot) -> None:
        self.pop(op_id)
        self._by_op[op_id] = snapshot
        held = (snapshot[0], snapshot[1])
        self._queued[held] = self._queued.get(held, 0) + 1

    def pop(self, op_id: int, default: Snapshot | None = None) -> Snapshot | None:
        snapshot = self._by_op.pop(op_id, None)
        if snapshot is None:
            return default
        held = (snapshot[0], snapshot[1])
        left = self._queued[held] - 1
        if left:
            self._queued[held] = left
        else:
            del self._queued[held]
        return snapshot

    def items(self) -> list[tuple[int, Snapshot]]:
        return list(self._by_op.items())

    def holds(self, key: ItemKey, write_gen: int) -> bool:
        """True if a queued upload holds ``key``'s bytes of ``write_gen``."""
        return (key, write_gen) in self._queued


class LastOps:
    """The newest op of each (oaio_id, path), and the other way round: forgetting an applied op
    costs O(its paths), not O(paths with pending ops) (issue 16: a backlog of thousands)."""

    def __init__(self) -> None:
        self._by_key: dict[ItemKey, Op] = {}
        self._keys_of: dict[int, set[ItemKey]] = {}     # op id -> the keys it is the newest op of

    def get(self, key: ItemKey) -> Op | None:
        return self._by_key.get(key)

    def __setitem__(self, key: ItemKey, op: Op) -> None:
        self.pop(key)
        self._by_key[key] = op
        self._keys_of.setdefault(op.id, set()).add(key)

    def pop(self, key: ItemKey) -> Op | None:
        op = self._by_key.pop(key, None)
        if op is not None:
            keys = self._keys_of.get(op.id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys_of[op.id]
        return op

    def keys(self) -> list[ItemKey]:
        return list(self._by_key)

    def forget(self, op_id: int) -> None:
        """``op_id`` is applied or discarded: no key has it as its newest op any more."""
        for key in self._keys_of.pop(op_id, ()):
            del self._by_key[key]


class WriteBack:
    """Submits the mount's changes to the journal and applies the journal's reports."""

    def __init__(self, journal: JournalLike, namespace: Namespace, cache: Cache) -> None:
        self.journal = journal
        self.ns = namespace
        self.cache = cache
        self._lock = threading.Lock()
        # chmod/utimens vs the last release of a dirty file: the mode/mtime go with the upload or in
        # a set_meta op after it, never lost in between (outer to ``_lock`` and the namespace lock)
        self._meta_lock = threading.Lock()
        self._snapshots = Snapshots()                           # put_file op id -> (key, write_gen, history)
        self._last_op = LastOps()                               # newest op per (oaio_id, path)
        self._applied: frozenset[int] = frozenset()             # replaced, never mutated: read lock-free
        # files written sequentially from offset 0 start uploading while still open
        self.streams = SequentialWrites(journal) if hasattr(journal, "begin_stream") else None

    # --- uploading while a file is written ---
    def wrote(self, item: Item, offset: int, length: int) -> None:
        """A write landed in ``item``: feed (or start, or spoil) its upload-while-writing stream."""
        if self.streams is not None:
            oaio_id, path = item.key
            self.streams.wrote(item.key, oaio_id, path, item.version, item.data_path, offset, length)

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
    def submit(self, op: Op, key: ItemKey | None = None, base: Callable[[], int | None] | None = None) -> Op:
        """Queue a metadata op (durable when this returns); ``base`` gives its base version, read
        under the lock like a put_file's (see the module doc)."""
        with self._lock:
            if base is not None:
                op.base_version = base()
            op = self.journal.submit(op)
            self._last_op[key or (op.oaio_id, op.path)] = op
        if not self.ns.patch_submitted(op):        # set_meta/mkdir: patched in place (issue 16)
            self.ns.local_changed(op.oaio_id)
        return op

    def submit_file(self, item: Item) -> Op | None:
        """Snapshot a changed file into the journal (before the release/fsync that calls this returns).

        The caller holds ``item.write_lock``: no write can land between the snapshot and
        the bookkeeping (the op's size is the file's size)."""
        stream = self.streams.take(item.key) if self.streams is not None else None
        if not item.dirty or item.detached:
            if stream is not None:
                stream.abort()
            if item.detached:
                log.debug("%s/%s was removed while open; not uploaded", *item.key)
                if not self.cache.written_at(item.key):     # else its overlay is a file renamed over it
                    self.ns.clear_open_file(*item.key)
            return None
        with self._lock:
            queued = self._snapshots.holds(item.key, item.write_gen)
        if queued and self.ns.open_file(*item.key) is None:
            # opened for writing but not written (touch, chmod on an open fd): the journal already
            # holds these bytes; a second upload would also undo a utimens made since
            if stream is not None:
                stream.abort()
            return None
        oaio_id, path = item.key
        sha256 = item.finish_hash()
        with self._meta_lock:
            shown = self.ns.open_file(oaio_id, path)      # mode/mtime set while open (cp -a, tar) go along
            mtime_ns = shown.mtime_ns if shown is not None and shown.mtime_ns else time.time_ns()
            with self._lock:
                # base: the version this history descends from (0 = "must not exist yet" for a new
                # file); read under _lock, see the module doc; the journal rebases chained ops
                op = Op("put_file", oaio_id, path, size=item.size, sha256=sha256, mtime=mtime_ns / 1e9,
                        base_version=item.version, mtime_ns=mtime_ns,
                        mode=shown.mode if shown is not None else None, parent_sha256=item.parent_sha)
                op = self.journal.submit(op, item.data_path, stream=stream)
                item.parent_sha = sha256         # the next snapshot descends from these bytes
                item.submitted()                # the journal holds a hard link: copy before the next write
                self._snapshots[op.id] = (item.key, item.write_gen, item.history)
                self._last_op[item.key] = op
                self.cache.persist(item)
            patched = self.ns.clear_open_file(oaio_id, path, submitted=op)
        if not patched:
            self.ns.local_changed(oaio_id)
        return op

    def submit_meta(self, op: Op) -> Op | None:
        """chmod/utimens (``set_meta`` op): onto the pending upload of a file open with unsaved
        writes, else into the journal (durable when this returns). None if it went with the file."""
        with self._meta_lock:
            if self.ns.update_open_file(op.oaio_id, op.path, mode=op.mode, mtime_ns=op.mtime_ns):
                return None
            if self._fold_into_upload(op):
                return None
            return self.submit(op)

    def _fold_into_upload(self, op: Op) -> bool:
        """chmod/utimens right after a file's release (``cp -p``, ``git clone``, ``tar x``): while
        the file's ``put_file`` is its newest op and has not started, the mode/mtime go with it
        (one op less, and the queue keeps runs of uploads that go out as one batch: issue 16)."""
        if op.kind != "set_meta":
            return False
        with self._lock:
            last = self._last_op.get((op.oaio_id, op.path))
            if last is None or last.kind != "put_file" or last.path != op.path:
                return False
            if not self.journal.amend_meta(last.id, op.mode, op.mtime_ns):
                return False
        if not self.ns.patch_submitted(op):
            self.ns.local_changed(op.oaio_id)
        return True

    def track(self, op: Op, item: Item) -> None:
        """``item`` holds the bytes of the pending ``op`` (re-read from the journal)."""
        with self._lock:
            self._snapshots[op.id] = (item.key, item.write_gen, item.history)

    def moved(self, oaio_id: str, src: str, dst: str, tree: bool) -> None:
        """Move the cache items of ``src`` (a file or folder) to ``dst``; their pending snapshots and
        newest ops follow them (under ``_lock``: an upload reported meanwhile finds its item)."""
        self.changed((oaio_id, src))

        def renamed(key: ItemKey) -> ItemKey | None:
            if key[0] != oaio_id or not (key[1] == src or key[1].startswith(src + "/")):
                return None
            return (oaio_id, dst + key[1][len(src):])
        with self._lock:
            self.cache.rename(oaio_id, src, dst, tree=tree)
            for op_id, (key, gen, history) in list(self._snapshots.items()):
                new_key = renamed(key)
                if new_key is not None:
                    self._snapshots[op_id] = (new_key, gen, history)
            for key in self._last_op.keys():
                new_key = renamed(key)
                moved = self._last_op.pop(key) if new_key is not None else None
                if new_key is not None and moved is not None:
                    self._last_op[new_key] = moved

    def last_failure(self, key: ItemKey) -> OaioError | None:
        """The error of ``key``'s newest op if the server refused it for good (rights, object gone).

        fsync reports it (once: the next snapshot becomes the newest op); a conflict is no
        failure: both versions were kept."""
        op = self._last_op.get(key)
        if op is None:
            return None
        try:
            done = self.journal.wait(op, timeout=0)
        except TimeoutError:
            return None
        if done.state != "failed":
            return None
        code, _, message = done.error.partition(": ")
        return error_from_response(0, {"error": code, "message": f"{key[1]}: not saved on the server: "
                                                                f"{message or done.error}"})

    def recover(self) -> int:
        """Start-up: hand the journal local bytes it never got (the mount died with the file open).

        Bytes the server already has are just marked clean. Returns how many files were submitted.
        """
        pending = [op for op in self.journal.pending(None) if op.kind == "put_file"]
        queued = {(op.oaio_id, op.path): op for op in pending}      # the newest upload of each file
        with self._lock:          # uploads queued by an earlier run still advance the local history
            for op in pending:
                rec = self.cache.peek((op.oaio_id, op.path))
                if rec is not None and (rec.get("dirty") or rec.get("sha256") == op.sha256):
                    gen = rec.get("write_gen", 0) if rec.get("sha256") == op.sha256 else -1
                    self._snapshots[op.id] = ((op.oaio_id, op.path), gen, rec.get("history", rec["token"]))
        submitted = 0
        for key, rec in self.cache.dirty_records():
            data = self.cache.data_dir / rec["token"]
            last = queued.get(key)
            if last is not None and (rec.get("sha256") == last.sha256 or not data.exists()):
                # the queued upload holds these bytes: the record turns clean (or is dropped, on a
                # conflict) when it is applied, as if this process had submitted it (issue 12 item 4)
                _repair_from_snapshot(data, last)
                with self._lock:
                    self._snapshots[last.id] = (key, rec.get("write_gen", 0), rec.get("history", rec["token"]))
                    self._last_op[key] = last
                continue
            if not data.exists():
                continue
            sha = file_sha256(data)
            if last is not None and sha == last.sha256:
                self.cache.repair_record(key, data.stat().st_size, sha)
                with self._lock:
                    self._snapshots[last.id] = (key, rec.get("write_gen", 0), rec.get("history", rec["token"]))
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
                    base_version=rec.get("version") or None, parent_sha256=rec.get("parent_sha"))
            with self._lock:
                op = self.journal.submit(op, data)
                self._snapshots[op.id] = (key, rec.get("write_gen", 0), rec.get("history", rec["token"]))
            log.warning("%s/%s: local changes from an interrupted mount queued for upload", *key)
            submitted += 1
        if submitted:
            self.ns.local_changed(None)
        return submitted

    # --- journal callbacks ---
    def on_applied(self, op: Op, doc: dict[str, Any] | None) -> None:
        """``op`` is on the server; ``doc`` is the object after it."""
        # the server's document first, only then stop replaying the op: a view rebuilt in between
        # by another thread shows the op twice (replay is idempotent), never neither (a folder
        # made here vanished for a moment: issue 12)
        patched = False
        if doc is not None:
            patched = self.ns.put_doc(doc, applied=op)     # True: the cached view was patched (issue 16)
        self._mark_applied(op)
        if doc is None and op.kind == "delete_object":
            self.ns.drop(op.oaio_id)
        if op.kind == "put_file":
            version = op.result_version
            if version is None and doc is not None:
                version = next((f["version"] for f in doc.get("files", []) if f["path"] == op.path), None)
            with self._lock:            # a submit reading the item's base waits for the advance
                snapshot = self._snapshots.pop(op.id, None)
                if snapshot is not None and version is not None:
                    key, gen, history = snapshot
                    self.cache.committed(key, version, op.sha256, gen, history)
        elif op.kind == "move" and op.base_version is not None and doc is not None:
            moved = next((f for f in doc.get("files", []) if f["path"] == op.dst and f.get("kind") == "file"), None)
            if moved is not None:       # our own move: a local history of the moved file continues from it
                with self._lock:
                    self.cache.moved_committed((op.oaio_id, op.dst), op.base_version, int(moved["version"]))
        with self._lock:
            self._last_op.forget(op.id)                 # fsync after this has nothing to wait for
        if not patched:                 # a patched view already shows the server's entry (issue 16)
            self.ns.local_changed(op.oaio_id)

    def reports(self) -> ContextManager[None]:
        """The cache records a batch's reports change go to disk in one transaction at its end
        (a stale record after a crash in between is harmless: the file is queued again at start
        and the server, holding its bytes already, takes it as done; see ``apply.py``)."""
        return self.cache.bulk()

    def on_conflict(self, op: Op, conflict_copy: str) -> None:
        log.warning("%s/%s changed elsewhere too; the local version was saved as %s",
                    op.oaio_id, op.path or "values.json", conflict_copy)
        if op.kind == "put_file":
            with self._lock:
                snapshot = self._snapshots.pop(op.id, None)
            if snapshot is not None:
                key, gen, _history = snapshot
                self.cache.drop_if_unchanged(key, gen)    # the server's version shows under the name
        self.ns.local_changed(op.oaio_id)

    def on_failed(self, op: Op, err: OaioError) -> None:
        log.warning("%s of %s/%s failed permanently (%s); local bytes kept", op.kind, op.oaio_id,
                    op.path, err.message)
        self.ns.local_changed(op.oaio_id)

    def on_discarded(self, op: Op) -> None:
        """The user discarded failed ``op`` (``oaiofs discard``): the server's version shows again."""
        with self._lock:
            snapshot = self._snapshots.pop(op.id, None)
            self._last_op.forget(op.id)
        if snapshot is not None:
            key, gen, _history = snapshot
            self.cache.drop_if_unchanged(key, gen)
        elif op.kind == "put_file":
            self.cache.remove(op.oaio_id, op.path, tree=False)
        self.ns.local_changed(op.oaio_id)

    def _mark_applied(self, op: Op) -> None:
        with self._lock:
            applied = self._applied
            if len(applied) > APPLIED_PRUNE_AT:
                still = {o.id for o in self.journal.pending(None)}
                applied = frozenset(i for i in applied if i in still)
            self._applied = applied | {op.id}


def _repair_from_snapshot(data: Path, op: Op) -> None:
    """A small snapshot is made durable by its op record, not by an fsync of its bytes (opstore.py),
    so after a power cut the cache file ``data`` that should hold ``op``'s bytes may not: copy the
    journal's snapshot (restored at start-up) over it, as a new file (the journal's is never
    written into)."""
    if op.size > INLINE_MAX_BYTES or not op.data_file or not data.exists() or file_sha256(data) == op.sha256:
        return
    log.warning("%s/%s: the cached bytes were damaged (power cut?); restoring them from the journal",
                op.oaio_id, op.path)
    tmp = data.with_name(data.name + ".restore")
    shutil.copyfile(op.data_file, tmp)
    os.replace(tmp, data)
