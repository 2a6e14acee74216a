"""The durable write-back journal: nothing the user saved is lost (issue 5).

``Journal.submit(op)`` records a mutating operation — and for ``put_file`` an O(1)
hard-link snapshot of its bytes (a small file's bytes also in the record) — durably on local
disk before it returns. Worker
threads apply ops to the server in submit order per object wherever they depend on each other (different
objects in parallel, and within an object the ops that touch disjoint paths, bounded: see
:mod:`oaiofs.vfs.schedule`), resume tus uploads from the server's offset after a crash,
retry transient failures with capped exponential backoff, and resolve version
conflicts by keeping both sides (:mod:`oaiofs.vfs.apply`). Persistence is
:class:`~oaiofs.vfs.opstore.OpStore` (SQLite WAL, ``synchronous=FULL``; the choice is
explained there). See docs/durability.md for the on-disk format and guarantees.

Op states: ``pending -> running -> done | conflict | failed``; ``running -> pending``
on a transient error (after a backoff) or on stop. ``done``/``conflict`` ops leave the
store; ``failed`` ops stay (bytes kept) until :meth:`Journal.discard` or :meth:`retry`.

Locking: ``self._cond`` guards the in-memory queue; the store has its own lock and
does only local disk I/O; no lock is held during network I/O or user callbacks.
"""
from __future__ import annotations

import bisect
import copy
import dataclasses
import errno as errno_mod
import fcntl
import itertools
import logging
import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import OaioError, Unavailable
from .apply import OpApplier, Outcome
from .batching import apply_batch, batchable, take_batch
from .opstore import ACTIVE_STATES, OP_KINDS, Op, OpStore
from .schedule import runnable
from .seams import JournalListener, ServerApi, Uploader
from .stream_upload import StreamHandle

__all__ = ["Journal", "JournalBusy", "read_status"]

log = logging.getLogger(__name__)

BACKOFF_INITIAL_S = 0.5
BACKOFF_CAP_S = 30.0
DEFAULT_WORKERS = 4            # ops applied at once, over all objects
DEFAULT_PER_OBJECT = 1         # ops of one object applied at once (independent ones, see schedule.py);
                               # 1 by default: measured slower with 4 (smaller batches, no compact answers)
PROGRESS_INTERVAL_S = 0.5
FINISHED_KEPT = 1000          # finished ops remembered for wait() on a copy
STREAM_JOIN_S = 60.0          # longest wait for an adopted stream's last PATCH
_OBJECT_LEVEL = ("create_object", "put_values", "delete_object")
_OBJECT_KEY = "\x00object"          # _chain_key of an object-level op (no file path starts with NUL)
ENV_BATCH = "OAIOFS_UPLOAD_BATCH"              # "0": never batch small files (one request per file)
ENV_UPLOAD_LIMIT = "OAIOFS_UPLOAD_LIMIT_BPS"   # default upload bandwidth cap in bytes/s (like rclone --bwlimit)
ENV_PARALLEL = "OAIOFS_UPLOAD_PARALLEL"        # default ops of one object at once ("1": one at a time)


def _chain_key(op: Op) -> str:
    """What :meth:`Journal._chain_locked` may rebase ``op`` on: its object's version or its path's."""
    return _OBJECT_KEY if op.kind in _OBJECT_LEVEL else op.path


class JournalBusy(OaioError):
    """Another process already runs a journal on this root."""

    code, errno = "journal_busy", errno_mod.EBUSY


def backoff_delay(attempts: int, initial_s: float = BACKOFF_INITIAL_S, cap_s: float = BACKOFF_CAP_S) -> float:
    """Seconds to wait after the ``attempts``-th failure: doubling from ``initial_s``, capped, ±20 % jitter."""
    base = min(cap_s, initial_s * (2.0 ** max(0, attempts - 1)))
    return min(cap_s, base * random.uniform(0.8, 1.2))


class Journal:
    """A durable, ordered, retrying queue of ops for one mount (one process per ``root``)."""

    def __init__(self, root: Path, api: ServerApi, uploader: Uploader, *, origin: str,
                 listener: JournalListener | None = None,
                 workers: int = DEFAULT_WORKERS, backoff_initial_s: float = BACKOFF_INITIAL_S,
                 backoff_cap_s: float = BACKOFF_CAP_S, upload_limit_bps: int | None = None,
                 batch: bool = True, per_object: int | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.origin = origin
        self._listener = listener
        self._workers_wanted = max(1, workers)
        self._backoff = (backoff_initial_s, backoff_cap_s)
        self._lock_fd = _lock_root(self.root)
        self._store = OpStore(self.root)
        self._cond = threading.Condition()
        self._active: dict[int, Op] = {}          # pending/running, by id
        self._queues: dict[str, list[Op]] = {}    # oaio_id -> its pending/running ops in submit (id) order
        self._queued_paths: dict[str, dict[str, int]] = {}   # oaio_id -> _chain_key -> queued ops (issue 16)
        self._failed: dict[int, Op] = {}
        self._finished: dict[int, Op] = {}        # recent done/conflict ops (bounded), for wait()
        self.restored: list[Op] = []              # ops whose small snapshot a power cut damaged (start-up)
        self._busy: dict[str, int] = {}           # oaio_id -> ops (a batch counts once) being applied
        self._own_versions: dict[str, set[int]] = {}   # oaio_id -> object versions our applied ops made
        self._small: dict[str, int] = {}          # oaio_id -> id of the running op (or batch head) of small files
        if per_object is None:
            per_object = int(os.environ.get(ENV_PARALLEL, "0") or 0) or DEFAULT_PER_OBJECT
        self._per_object = max(1, per_object)
        self._streams: dict[int, StreamHandle] = {}   # op id -> adopted stream whose last PATCH may be in flight
        self._retry_at: dict[str, float] = {}     # oaio_id -> monotonic time of the next attempt
        self._stopping = threading.Event()
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._online = bool(self._store.get_meta("online", True))
        if upload_limit_bps is None:
            upload_limit_bps = int(os.environ.get(ENV_UPLOAD_LIMIT, "0") or 0) or None
        self._applier = OpApplier(api, uploader, origin, self._store.update, self._stopping, upload_limit_bps)
        # small queued files of one object go in one batch request (issue 16); off with a bandwidth cap
        self._batching = (batch and hasattr(api, "commit_batch") and not upload_limit_bps
                          and os.environ.get(ENV_BATCH, "1") != "0")
        self._reload()

    # --- public API ---------------------------------------------------------------------
    @property
    def online(self) -> bool:
        """False from a failed server call (server unreachable) until a call succeeds."""
        return self._online

    def begin_stream(self, oaio_id: str, path: str, base_version: int | None,
                     data_file: Path) -> StreamHandle | None:
        """Start uploading ``data_file`` while it is still written sequentially (see
        :mod:`oaiofs.vfs.stream_upload`); None when the object has ops waiting or the
        server is unreachable (the file is then sent at release as usual)."""
        with self._cond:
            if self._closed or not self._online or self._queues.get(oaio_id):
                return None
        return StreamHandle(self._applier.uploader, oaio_id, path, base_version, Path(data_file),
                            limit_bps=self._applier.upload_limit_bps)

    def submit(self, op: Op, data_source: Path | None = None, stream: StreamHandle | None = None) -> Op:
        """Record ``op`` durably (snapshotting ``data_source`` for ``put_file``) and queue it.

        ``stream`` (from :meth:`begin_stream`, for the same file) is adopted when
        nothing else of the object is queued: the op resumes its upload, so only the
        bytes the stream has not sent yet go out after this release.
        """
        _check_op(op, data_source)
        op = dataclasses.replace(op, id=0, state="pending", offset=0, attempts=0, error="",
                                 upload_url=None, result_version=None, conflict_path="")
        inline: bytes | None = None
        if op.kind == "put_file":
            assert data_source is not None       # _check_op: a put_file has its bytes
            snapshot, inline = self._store.snapshot(Path(data_source))
            op.data_file = str(snapshot)
            op.size = len(inline) if inline is not None else os.stat(op.data_file).st_size
        with self._cond:
            adopted = stream is not None and self._adopt_locked(op, stream, Path(data_source or ""))
            self._store.insert(op, inline)
            if adopted and stream is not None:
                self._streams[op.id] = stream
            self._enqueue_locked(op)
            self._cond.notify_all()
        log.debug("%s %s: queued %s op %d", op.oaio_id, op.path, op.kind, op.id)
        return op

    def amend_meta(self, op_id: int, mode: int | None, mtime_ns: int | None) -> bool:
        """Let a queued ``put_file`` that has not started carry a later chmod/utimens of its file
        (durable when this returns); False when it is running, streamed, resumed or gone: then
        the change needs its own ``set_meta`` op. The caller makes sure no op of the file is
        queued after it (see ``WriteBack.submit_meta``)."""
        with self._cond:
            op = self._active.get(op_id)
            if (op is None or op.kind != "put_file" or op.state != "pending" or op.id in self._streams
                    or op.upload_url or op.attempts or op.conflict_path):
                return False
            if mode is not None:
                op.mode = mode
            if mtime_ns is not None:
                op.mtime_ns, op.mtime = mtime_ns, mtime_ns / 1e9
            self._store.update(op)
        return True

    def _adopt_locked(self, op: Op, stream: StreamHandle, data_source: Path) -> bool:
        """Let ``op`` continue ``stream``'s upload if it is for the same file and nothing is queued before it."""
        same = (op.kind == "put_file" and stream.oaio_id == op.oaio_id and stream.path == op.path
                and stream.base_version == op.base_version and not self._queues.get(op.oaio_id)
                and _same_file(stream.data_file, data_source))
        handed = stream.detach() if same else None
        if handed is None:
            stream.abort()
            return False
        op.upload_url, op.offset = handed
        log.debug("%s %s: adopting the upload streamed while writing (%d bytes sent)", op.oaio_id, op.path,
                  op.offset)
        return True

    def wait(self, op: Op, timeout: float | None = None) -> Op:
        """Block until ``op`` (the one ``submit`` returned, or a copy) is done, failed or resolved
        by a conflict copy; returns the op in its final state."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._final_locked(op) is not None, timeout):
                raise TimeoutError(f"op {op.id} ({op.kind} {op.oaio_id}/{op.path}) still {op.state}")
            final = self._final_locked(op)
        assert final is not None
        return final

    def _final_locked(self, op: Op) -> Op | None:
        """``op`` in its final state, or None while it is still queued."""
        if op.id in self._active:
            return None
        if op.id in self._failed:
            return self._failed[op.id]
        return self._finished.get(op.id) or dataclasses.replace(op, state="done")   # finished long ago

    def wait_idle(self, timeout: float | None = None,
                  on_progress: Callable[[dict[str, Any]], None] | None = None) -> bool:
        """Block until no op is pending or running; True if that happened within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                remaining = None if deadline is None else deadline - time.monotonic()
                if not self._active:
                    return True
                if remaining is not None and remaining <= 0:
                    return False
                step = PROGRESS_INTERVAL_S if remaining is None else min(PROGRESS_INTERVAL_S, remaining)
                self._cond.wait_for(lambda: not self._active, step)
            if on_progress is not None:
                on_progress(self.status())

    def pending(self, oaio_id: str | None = None) -> list[Op]:
        """Copies of the ops not yet applied (pending, running and failed), in submit order."""
        with self._cond:
            if oaio_id is None:
                ops = sorted([*self._active.values(), *self._failed.values()], key=lambda o: o.id)
            else:                    # the object's queue is its active ops in id order (issue 16:
                ops = list(self._queues.get(oaio_id, ()))     # not a sort of every object's ops)
                failed = [o for o in self._failed.values() if o.oaio_id == oaio_id]
                if failed:
                    ops = sorted([*ops, *failed], key=lambda o: o.id)
            # copy.copy, not dataclasses.replace: the namespace asks on every view rebuild (issue 16)
            return [copy.copy(o) for o in ops]

    def busy(self, oaio_id: str) -> bool:
        """True while ops of the object are queued or running (their answers bring its next document)."""
        with self._cond:
            return oaio_id in self._queues       # the object's active ops (not a scan of every op)

    def status(self) -> dict[str, Any]:
        """``{"online", "ops": [...], "conflicts": [...], "failed": [...]}`` for ``oaiofs status``."""
        with self._cond:
            ops = [o.summary() for o in sorted(self._active.values(), key=lambda o: o.id)]
            failed = [o.summary() for o in sorted(self._failed.values(), key=lambda o: o.id)]
        return {"online": self._online, "ops": ops, "conflicts": self._store.conflicts(), "failed": failed}

    def wake(self) -> None:
        """Retry every op waiting out a backoff now (e.g. the drive saw the server come back)."""
        with self._cond:
            self._retry_at.clear()
            self._cond.notify_all()

    def retry(self, op_id: int | None = None) -> int:
        """Queue failed ops again (all, or one) and retry waiting ones now; returns how many were re-queued."""
        with self._cond:
            ids = [op_id] if op_id is not None else list(self._failed)
            count = 0
            for oid in ids:
                op = self._failed.pop(oid, None)
                if op is not None:
                    op.state, op.error, op.attempts = "pending", "", 0
                    self._store.update(op)
                    self._enqueue_locked(op)
                    count += 1
            self._retry_at.clear()
            self._cond.notify_all()
        return count

    def discard(self, op_id: int) -> bool:
        """Forget a failed op and delete its kept bytes (the user's explicit choice)."""
        with self._cond:
            op = self._failed.pop(op_id, None)
        if op is None:
            return False
        self._store.delete(op)
        self._store.remove_data(op.data_file)
        log.warning("%s %s: failed %s op %d discarded by the user", op.oaio_id, op.path, op.kind, op.id)
        return True

    def clear_conflicts(self) -> int:
        """Forget the conflict records (``oaiofs conflicts --clear``); the conflict copies stay."""
        return self._store.clear_conflicts()

    def failed_op(self, op_id: int) -> Op | None:
        """A copy of the failed op ``op_id`` (with its kept bytes' path), or None."""
        with self._cond:
            op = self._failed.get(op_id)
            return dataclasses.replace(op) if op is not None else None

    def set_listener(self, listener: JournalListener) -> None:
        """Who is told about finished ops, when it is built after the journal (the drive's
        WriteBack submits to the journal it listens to); before :meth:`start`."""
        self._listener = listener

    def start(self) -> None:
        """Start the worker threads (idempotent); needs a listener."""
        if self._listener is None:
            raise ValueError("Journal.start: no listener (pass listener= or call set_listener)")
        with self._cond:
            if self._threads:
                return
            self._stopping.clear()
            self._threads = [threading.Thread(target=self._work, name=f"oaiofs-journal-{i}", daemon=True)
                             for i in range(self._workers_wanted)]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Stop the workers; an interrupted upload stays queued and resumes on the next start."""
        with self._cond:
            self._stopping.set()
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("journal workers still busy after %.1fs: %s (their ops stay queued)", timeout, alive)
        self._threads = []

    def close(self) -> None:
        """Stop and release the store and the root lock (idempotent)."""
        if self._closed:
            return
        self.stop()
        self._closed = True
        self._store.close()
        os.close(self._lock_fd)

    # --- workers ------------------------------------------------------------------------
    def _reload(self) -> None:
        ops = self._store.load()
        self.restored = self._store.restore_snapshots([op for op in ops if op.state in (*ACTIVE_STATES, "failed")])
        for op in ops:
            if op.state in ACTIVE_STATES:
                op.state = "pending"
                self._enqueue_locked(op)
            elif op.state == "failed":
                self._failed[op.id] = op
        orphans = self._store.remove_orphans()
        if self._active or self._failed:
            log.info("journal %s: %d ops to apply, %d failed kept (%d orphan snapshots removed)",
                     self.root, len(self._active), len(self._failed), orphans)

    def _work(self) -> None:
        while True:
            with self._cond:
                op = self._next_runnable_locked()
                while op is None and not self._stopping.is_set():
                    self._cond.wait(self._seconds_to_next_retry_locked())
                    op = self._next_runnable_locked()
                if self._stopping.is_set() or op is None:
                    return
                batch = self._take_batch_locked(op) if self._batching and op.id not in self._streams else []
                for member in batch:
                    member.state = "running"
                op.state = "running"
                self._busy[op.oaio_id] = self._busy.get(op.oaio_id, 0) + 1
                if self._is_small(op):
                    self._small[op.oaio_id] = op.id
                stream = self._streams.pop(op.id, None)
            if batch:
                try:
                    self._run_batch(batch)
                except sqlite3.ProgrammingError:
                    if self._closed:
                        return
                    raise
                finally:
                    with self._cond:
                        self._release_locked(op)
                        self._cond.notify_all()
                continue
            if stream is not None:
                stream.join(STREAM_JOIN_S)    # its PATCH in flight lands first: the upload resumes after it
            try:
                self._finish(op, self._applier.apply(op))
            except sqlite3.ProgrammingError:
                if self._closed:
                    return            # close() gave up waiting for this worker; the op stays queued on disk
                raise

    def _take_batch_locked(self, head: Op) -> list[Op]:
        """``head`` and small put_files to commit with it: with parallel ops on, any pending ops
        independent of every earlier queued op (:func:`~oaiofs.vfs.schedule.runnable`), so a big
        file's tus upload runs beside a batch of small ones; with one op at a time, the ops right
        behind ``head`` (as before)."""
        queue = self._queues[head.oaio_id]
        if self._per_object == 1:
            return take_batch(queue, self._streams)
        # from ``head`` on: the batch must start with the op this worker picked (and marks running)
        return take_batch(itertools.dropwhile(lambda o: o is not head, runnable(queue)), self._streams, skip=True)

    def _run_batch(self, batch: list[Op]) -> None:
        """Commit ``batch`` (small put_files of one object, see :mod:`oaiofs.vfs.batching`) in one
        request; the ops it did not commit are applied one by one, in order, as usual. The batch
        holds one of its object's slots until it returns (the caller releases it)."""
        outcomes = apply_batch(self._applier.api, batch, self._applier.doc_or_none)
        assert self._listener is not None                         # start() refuses to run without one
        with self._listener.reports():      # the drive writes the batch's bookkeeping together
            self._report_batch(batch, outcomes)

    def _report_batch(self, batch: list[Op], outcomes: list[Outcome | None]) -> None:
        for op, outcome in zip(batch, outcomes):
            if outcome is not None and outcome.state == "done":
                op.result_version = outcome.result_version    # pending() shows the batch's versions
        # the committed ops before the first one applied alone (which may end the loop with a
        # retry) leave the store in one transaction: one fsync, not one per file
        done = list(itertools.takewhile(lambda pair: pair[1] is not None and pair[1].state == "done",
                                        zip(batch, outcomes)))
        self._store.delete_many([op for op, _ in done])
        forgotten = {op.id for op, _ in done}
        for i, (op, outcome) in enumerate(zip(batch, outcomes)):
            if outcome is None:
                outcome = self._applier.apply(op)
            self._finish(op, outcome, release=False, stored=op.id not in forgotten)
            if outcome.state == "retry":          # the rest waits behind it, as in the queue
                with self._cond:
                    for later in batch[i + 1:]:
                        later.state = "pending"
                    self._cond.notify_all()
                return

    def _next_runnable_locked(self) -> Op | None:
        """The oldest op that depends on no earlier op still queued or running (schedule.py),
        of an object below its parallel limit and not backing off. Small files of one object go
        one batch at a time (while one is sent, the next ones gather into the next batch; sent
        one by one in parallel they would cost a request and a server commit each); the other
        slots take the object's other independent ops (big files by tus, folders, moves)."""
        now = time.monotonic()
        best: Op | None = None
        for oaio_id, queue in self._queues.items():
            if self._busy.get(oaio_id, 0) >= self._per_object or self._retry_at.get(oaio_id, 0.0) > now:
                continue
            small_busy = oaio_id in self._small
            op = next((o for o in runnable(queue) if not (small_busy and self._is_small(o))), None)
            if op is not None and (best is None or op.id < best.id):
                best = op
        return best

    def _is_small(self, op: Op) -> bool:
        """True for an op that would go into a batch (with batching on and parallel ops on)."""
        return self._batching and self._per_object > 1 and batchable(op, op.id in self._streams)

    def _release_locked(self, op: Op) -> None:
        """``op`` (alone, or as a batch's head) stopped running."""
        left = self._busy.get(op.oaio_id, 0) - 1
        if left > 0:
            self._busy[op.oaio_id] = left
        else:
            self._busy.pop(op.oaio_id, None)
        if self._small.get(op.oaio_id) == op.id:
            del self._small[op.oaio_id]

    def _enqueue_locked(self, op: Op) -> None:
        self._active[op.id] = op
        paths = self._queued_paths.setdefault(op.oaio_id, {})
        paths[_chain_key(op)] = paths.get(_chain_key(op), 0) + 1
        queue = self._queues.setdefault(op.oaio_id, [])
        if queue and queue[-1].id > op.id:        # a failed op queued again: back to its place
            bisect.insort(queue, op, key=lambda o: o.id)
        else:
            queue.append(op)

    def _dequeue_locked(self, op: Op) -> None:
        self._active.pop(op.id, None)
        queue = self._queues.get(op.oaio_id, [])
        # in place, found by bisection (the queue is in id order): not a copy of the queue per op
        at = 0 if queue and queue[0].id == op.id else bisect.bisect_left(queue, op.id, key=lambda o: o.id)
        if at < len(queue) and queue[at].id == op.id:
            del queue[at]
            paths = self._queued_paths.get(op.oaio_id, {})
            left = paths.get(_chain_key(op), 0) - 1
            if left > 0:
                paths[_chain_key(op)] = left
            else:
                paths.pop(_chain_key(op), None)
        if not queue:
            self._queues.pop(op.oaio_id, None)
            self._own_versions.pop(op.oaio_id, None)
            self._queued_paths.pop(op.oaio_id, None)

    def _seconds_to_next_retry_locked(self) -> float | None:
        waiting = [t for oid, t in self._retry_at.items() if self._busy.get(oid, 0) < self._per_object]
        return max(0.01, min(waiting) - time.monotonic()) if waiting else None

    def _finish(self, op: Op, outcome: Outcome, release: bool = True, stored: bool = True) -> None:
        """Record an attempt's outcome, then tell the drive (outside the lock). ``release``: the op
        held one of its object's slots (False for a batch member: the batch holds one).
        ``stored``: False when a done op was already deleted from the store (a batch's)."""
        if outcome.state == "retry":
            self._reschedule(op, outcome, release)
            return
        self._set_online(True)
        op.result_version = outcome.result_version
        op.conflict_path = outcome.conflict_path or op.conflict_path
        final = dataclasses.replace(op, state=outcome.state)    # what the callbacks see and the store keeps
        listener = self._listener
        assert listener is not None                               # start() refuses to run without one
        if outcome.state == "failed":
            final.error = op.error = f"{outcome.error.code}: {outcome.error.message}" if outcome.error else "failed"
            self._store.update(final)
            log.warning("%s %s: %s op %d FAILED (%s); local bytes kept in %s", op.oaio_id, op.path,
                        op.kind, op.id, op.error, op.data_file or "the journal")
            self._notify(listener.on_failed, final, outcome.error or OaioError(op.error))
        else:
            if stored:
                self._store.delete(op)
            if outcome.state == "conflict":
                self._store.add_conflict(op, outcome.conflict_path, {"origin": self.origin})
                self._notify(listener.on_conflict, final, outcome.conflict_path)
            self._notify(listener.on_applied, final, outcome.doc)
            self._store.remove_data(op.data_file)
        with self._cond:                 # only now may wait() return: the drive has been told
            # rebase after the callbacks: an op submitted before this point is queued here, one
            # submitted after it was based on what on_applied told the drive (see writeback.py)
            self._chain_locked(op, outcome)
            self._dequeue_locked(op)
            op.state = outcome.state
            if op.state == "failed":
                self._failed[op.id] = op
            else:
                self._finished[op.id] = op
                if len(self._finished) > FINISHED_KEPT:
                    self._finished.pop(next(iter(self._finished)))
            if release:
                self._release_locked(op)
            if op.attempts:              # the op that was backing off got through: the object goes on
                self._retry_at.pop(op.oaio_id, None)
            self._cond.notify_all()

    def _reschedule(self, op: Op, outcome: Outcome, release: bool = True) -> None:
        if isinstance(outcome.error, Unavailable):
            self._set_online(False)
        with self._cond:
            op.state = "pending"
            if release:
                self._release_locked(op)
            if outcome.error is not None:
                op.attempts += 1
                op.error = f"{outcome.error.code}: {outcome.error.message}"
                delay = backoff_delay(op.attempts, *self._backoff)
                self._retry_at[op.oaio_id] = time.monotonic() + delay
                log.info("%s %s: %s op %d attempt %d failed (%s); retrying in %.1fs", op.oaio_id, op.path,
                         op.kind, op.id, op.attempts, op.error, delay)
            self._cond.notify_all()
        self._store.update(op)

    def _chain_locked(self, applied: Op, outcome: Outcome) -> None:
        """Rebase later ops of the same object on the versions this op produced (see module doc)."""
        if outcome.state != "done":
            return
        obj_version = outcome.result_version   # put_file: the version our upload made (exact)
        if obj_version is None and outcome.doc:
            obj_version = outcome.doc.get("version")
        file_versions: dict[str, int] = {}
        if applied.kind == "put_file" and outcome.result_version is not None:
            file_versions[applied.path] = outcome.result_version
        elif applied.kind == "delete_path":
            file_versions[applied.path] = 0
        elif applied.kind == "move":
            file_versions[applied.path] = 0
            if not outcome.base_held:
                return               # the source had changed elsewhere: later ops must meet that change
            moved = next((f for f in (outcome.doc or {}).get("files", []) if f.get("path") == applied.dst), None)
            if moved is not None:
                file_versions[applied.dst] = int(moved["version"])
        own = self._own_versions.setdefault(applied.oaio_id, set())
        if obj_version is not None:
            own.add(int(obj_version))    # parallel ops finish in any order: chain over all of ours
        queued = self._queued_paths.get(applied.oaio_id, {})
        if not queued.get(_OBJECT_KEY) and not any(p in queued for p in file_versions):
            return                       # no queued op to rebase: not a scan of the queue per op
        for later in self._queues.get(applied.oaio_id, []):
            if later.id <= applied.id or later.base_version is None:
                continue
            new_base = None
            if later.kind in _OBJECT_LEVEL:
                if obj_version is not None and later.base_version + 1 in own:
                    new_base = later.base_version
                    while new_base + 1 in own:
                        new_base += 1
            elif later.path in file_versions:
                new_base = file_versions[later.path]
            if new_base is not None and new_base != later.base_version:
                later.base_version = new_base
                self._store.update(later)

    def _set_online(self, online: bool) -> None:
        if online == self._online:
            return
        self._online = online
        self._store.set_meta("online", online)
        log.warning("server is %s", "reachable again" if online else "unreachable; changes stay queued")
        if online:
            self.wake()        # the server is back: retry everything that was waiting for it now

    def _notify(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:  # noqa: BLE001 - a drive bug must not stall the queue
            log.exception("journal callback %r failed", callback)


def _same_file(a: Path, b: Path) -> bool:
    """True if both paths name one inode (the journal's snapshot is a hard link of the drive's file)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_op(op: Op, data_source: Path | None) -> None:
    """Refuse an op that could not be applied (a caller bug), before anything is recorded."""
    if op.kind not in OP_KINDS:
        raise ValueError(f"unknown op kind {op.kind!r}")
    if not op.oaio_id:
        raise ValueError(f"{op.kind} needs an oaio_id")
    if op.kind == "put_file" and data_source is None:
        raise ValueError("put_file needs data_source (the bytes to snapshot)")
    if op.kind == "put_values" and not isinstance(op.values, dict):
        raise ValueError("put_values needs the full new values (a dict)")
    if op.kind in ("put_file", "mkdir", "delete_path", "move") and not op.path:
        raise ValueError(f"{op.kind} needs a path")
    if op.kind in ("set_meta", "symlink") and not op.path:
        raise ValueError(f"{op.kind} needs a path")
    if op.kind == "symlink" and not op.target:
        raise ValueError("symlink needs a target")
    if op.kind == "move" and not op.dst:
        raise ValueError("move needs dst")


def read_status(root: Path) -> dict[str, Any]:
    """The queue as last persisted in ``root`` (for ``oaiofs status`` from another process)."""
    if not (Path(root) / "journal.db").exists():
        return {"online": True, "ops": [], "conflicts": [], "failed": []}
    store = OpStore(Path(root))
    try:
        ops = store.load()
        return {"online": bool(store.get_meta("online", True)),
                "ops": [o.summary() for o in ops if o.state in ACTIVE_STATES],
                "conflicts": store.conflicts(),
                "failed": [o.summary() for o in ops if o.state == "failed"]}
    finally:
        store.close()


def _lock_root(root: Path) -> int:
    """Hold an exclusive flock on ``root/journal.lock`` (released by the kernel even on kill -9)."""
    fd = os.open(root / "journal.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalBusy(f"another oaiofs process uses the journal in {root}") from None
    return fd
