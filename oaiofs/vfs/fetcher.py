"""Filling cache items from the server: ranged background streams with adaptive read-ahead,
and batches of small files fetched together in one cart.

A read waits only for its own byte range: a :class:`Stream` thread copies the
remote bytes into the item's sparse file and wakes readers (``Item.cond``) as
each chunk lands. A per-handle :class:`ReadState` grows the read-ahead window
while reads are sequential; a stream pauses when it is that far ahead of the
reader, and a far seek starts a new stream at the first missing byte.

Locking: ``Item.cond`` is held only to look at ranges and stream positions,
never while reading from the network or writing the file.
"""
from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Iterator, Protocol

from ..hashing import file_sha256
from ..errors import OaioError, Unavailable
from .cache import Cache, Item, ItemKey
from .counters import COUNTERS
from .errors import NotCached

log = logging.getLogger(__name__)

READAHEAD_MIN_BYTES = 1 << 20
READAHEAD_MAX_BYTES = 64 << 20
SEQUENTIAL_SLACK_BYTES = 2 << 20   # reads this far behind the furthest one are still "sequential"
REUSE_GAP_BYTES = 4 << 20          # a read this close ahead of a stream waits for it instead of seeking
MAX_STREAMS_PER_ITEM = 3
STREAM_IDLE_S = 30.0               # a paused stream nobody reads from gives its connection back
WAIT_TICK_S = 1.0


class ByteSource(Protocol):
    """Where file bytes come from (carts over HTTP in the mount; a dict in unit tests)."""

    def open_range(self, oaio_id: str, path: str, version: int, sha256: str | None, start: int,
                   end: int) -> ContextManager[Iterator[bytes | memoryview]]: ...

    def fetch_batch(self, files: list["Candidate"], dest_dir: Path) -> dict[ItemKey, Path]: ...


@dataclass(slots=True)
class ReadState:
    """Per-handle sequential-read detector."""

    last_end: int = -1
    window: int = READAHEAD_MIN_BYTES

    def observe(self, offset: int, end: int) -> int:
        """Record a read; return the read-ahead window to keep filled after it.

        The kernel's own read-ahead sends several reads at once, so they arrive slightly out
        of order: a read a little behind or within the window ahead still counts as sequential.
        """
        if self.last_end < 0:
            self.last_end = end
        elif self.last_end - SEQUENTIAL_SLACK_BYTES <= offset <= self.last_end + self.window:
            self.window = min(self.window * 2, READAHEAD_MAX_BYTES)
            self.last_end = max(self.last_end, end)
        else:
            self.window = READAHEAD_MIN_BYTES
            self.last_end = end
        return self.window


@dataclass(slots=True)
class Candidate:
    """A small file that may ride along in a batch."""

    key: ItemKey
    version: int
    sha256: str | None
    size: int


class Stream:
    """One background ranged download into one item."""

    def __init__(self, fetcher: "Fetcher", item: Item, start: int, target: int) -> None:
        self.fetcher = fetcher
        self.item = item
        self.start = self.pos = start
        self.target = target
        self.cancelled = False
        self.thread = threading.Thread(target=self._run, name=f"fetch-{item.key[1][-20:]}", daemon=True)

    def cancel(self) -> None:
        self.cancelled = True

    def _run(self) -> None:
        item = self.item
        oaio_id, path = item.key
        try:
            self.fetcher.settle(item)                 # a rename here must reach the server first
            oaio_id, path = item.key
            with self.fetcher.source.open_range(oaio_id, path, item.version, item.sha256,
                                                         self.start, item.size) as chunks:
                for chunk in chunks:
                    if self.cancelled or not item.store(self.pos, chunk):
                        return
                    self.pos += len(chunk)
                    COUNTERS.download_bytes += len(chunk)
                    if not self._may_continue():
                        return
        except Exception as exc:  # noqa: BLE001 - handed to the waiting readers
            if not isinstance(exc, OaioError):
                log.warning("fetching %s/%s failed", oaio_id, path, exc_info=True)
            item.fail(exc)
        finally:
            with item.cond:
                if self in item.streams:
                    item.streams.remove(self)
                item.cond.notify_all()

    def _may_continue(self) -> bool:
        item = self.item
        with item.cond:
            if self.pos >= item.size:
                return False
            if item.ranges.contains(self.pos, self.pos + 1):
                return False                      # ran into bytes we already have
            while self.pos >= self.target and not self.cancelled:
                if not item.cond.wait(STREAM_IDLE_S) and self.pos >= self.target:
                    return False
            return not self.cancelled


class Fetcher:
    """Reads through the cache, fetching what is missing."""

    def __init__(self, source: ByteSource, cache: Cache) -> None:
        self.source = source
        self.cache = cache
        # called in a stream's thread before it asks the server for an item's name (the Vfs waits
        # there for a move onto that name queued here: until it is applied, the name holds other bytes)
        self.settle: Callable[[Item], None] = lambda item: None
        self._batch_lock = threading.Lock()
        self._inflight: dict[ItemKey, threading.Event] = {}

    # --- reads of one item ---
    def wait_for_read(self, item: Item, state: ReadState, offset: int, size: int) -> None:
        """Block until ``[offset, offset+size)`` of ``item`` is present, streaming ahead of it."""
        end = min(offset + size, item.size)
        if offset >= end:
            return
        window = state.observe(offset, end)
        if not item.dirty and self.wait_range(item, offset, end, ahead=min(item.size, end + window)):
            COUNTERS.cache_misses += 1
        else:
            COUNTERS.cache_hits += 1

    def read(self, item: Item, state: ReadState, offset: int, size: int) -> bytes:
        """Bytes ``[offset, offset+size)`` of ``item``, waiting only for that range."""
        self.wait_for_read(item, state, offset, size)
        return item.read(offset, max(0, min(size, item.size - offset)))

    def wait_range(self, item: Item, start: int, end: int, ahead: int | None = None) -> bool:
        """Block until ``[start, end)`` is present; keep streams going up to ``ahead``.

        True if the range was not all there yet (a cache miss)."""
        ahead = max(ahead or end, end)
        with item.cond:
            if item.ranges.contains(start, ahead):
                return False
            missed = not item.ranges.contains(start, end)
            while not item.ranges.contains(start, end):
                if item.error is not None and not item.streams:
                    error, item.error = item.error, None
                    raise _as_read_error(error, item)
                self._ensure_stream_locked(item, start, ahead)
                item.cond.wait(WAIT_TICK_S)
            self._ensure_stream_locked(item, end, ahead)    # read-ahead past this read
        return missed

    def fill(self, item: Item) -> None:
        """Fetch all of ``item`` (before writing to it, or for a pin)."""
        self.wait_range(item, 0, item.size)

    def _ensure_stream_locked(self, item: Item, start: int, target: int) -> None:
        first_missing = item.ranges.present_end(start)
        if first_missing >= min(target, item.size):
            return
        for stream in item.streams:
            if not stream.cancelled and stream.pos <= first_missing <= max(stream.pos + REUSE_GAP_BYTES,
                                                                           stream.target):
                if target > stream.target:
                    stream.target = target
                    item.cond.notify_all()
                return
        if len(item.streams) >= MAX_STREAMS_PER_ITEM:
            item.streams[0].cancel()
            item.streams.pop(0)
        log.debug("%s: new stream at %d (target %d)", item.key[1], first_missing, target)
        stream = Stream(self, item, first_missing, target)
        item.streams.append(stream)
        stream.thread.start()

    # --- small files in batches ---
    def fetch_batch(self, wanted: Candidate, companions: list[Candidate]) -> None:
        """Fetch ``wanted`` (and the companions not already in flight) in one batch into the cache."""
        with self._batch_lock:
            event = self._inflight.get(wanted.key)
            mine: list[Candidate] = []
            if event is None:
                event = threading.Event()
                for cand in [wanted, *companions]:
                    if cand.key not in self._inflight:
                        self._inflight[cand.key] = event
                        mine.append(cand)
        if not mine:
            event.wait()
            return
        try:
            self._download_batch(mine)
        finally:
            with self._batch_lock:
                for cand in mine:
                    self._inflight.pop(cand.key, None)
            event.set()

    def _download_batch(self, batch: list[Candidate]) -> None:
        with tempfile.TemporaryDirectory(dir=self.cache.root, prefix="batch-") as tmp:
            try:
                got = self.source.fetch_batch(batch, Path(tmp))
            except OaioError as exc:
                log.info("batch fetch of %d files failed: %s", len(batch), exc)
                return
            with self.cache.bulk():
                for cand in batch:
                    path = got.get(cand.key)
                    if path is None or not path.exists():
                        continue
                    if cand.sha256 and file_sha256(path) != cand.sha256:
                        log.debug("%s/%s changed on the server since the listing; not cached", *cand.key)
                        continue
                    self.cache.install(cand.key, path, version=cand.version, sha256=cand.sha256,
                                       size=cand.size)
                    COUNTERS.download_bytes += cand.size
        self.cache.enforce_quota()


def _as_read_error(error: Exception, item: Item) -> OaioError:
    if isinstance(error, Unavailable):
        return NotCached(f"{item.key[1]}: not in the cache and the server is unreachable")
    if isinstance(error, OaioError):
        return error
    return Unavailable(f"{item.key[1]}: download failed ({type(error).__name__})")

