"""The disk cache: one sparse data file + a present-range set per (object, file path).

Layout of the cache folder::

    index/        diskcache.Cache — persistent index: item records, pins (LRU bookkeeping),
                  read from memory and written by one thread (:mod:`.cache_index`)
    data/<token>  sparse data files (bytes at their file offsets)

An :class:`Item` is the in-memory state of one cached file: its fd, size, the
server version its bytes belong to, the ranges present, open count, and its write-path
state (:mod:`.item_state`: clean/dirty/handed to the journal; live/detached/closed).
The cache keeps the total of present bytes under a quota by evicting the least
recently used items that are not open, dirty or pinned.

Locking: ``Cache._lock`` before ``Item.cond``; never hold either while talking to
the network. Methods ending in ``_locked`` need ``Item.cond`` held.
"""
from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any, ContextManager

from .cache_index import CacheIndex
from .hashing import IncrementalHash
from .item_state import ItemEvent, ItemState, Lifecycle, next_life, next_state
from .ranges import RangeSet

log = logging.getLogger(__name__)

_WRITE, _UNLINK = ItemEvent.WRITE, ItemEvent.UNLINK     # module constants: hot paths skip Enum's class lookup
_LIFE_EVENTS = (ItemEvent.DETACH, ItemEvent.CLOSE)

ItemKey = tuple[str, str]          # (oaio_id, path)
_PINS_KEY = "pins"
EVICT_TO_FRACTION = 0.9            # evict down to 90% of the quota once it is exceeded


_libc = ctypes.CDLL(None, use_errno=True)        # the process's own symbols, libc among them
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range of dirty pages to disk, without waiting (Linux only;
    a no-op elsewhere or on failure: the later fsync does the work then)."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _record_key(key: ItemKey) -> str:
    return "item\0" + key[0] + "\0" + key[1]


def _same_content(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """``old`` and ``new`` differ at most in their access time."""
    return old is not None and all(old.get(k) == v for k, v in new.items() if k != "atime")


class Item:
    """One cached file. Readers wait on ``cond`` for ranges; fetchers and writers fill them."""

    def __init__(self, cache: "Cache", key: ItemKey, token: str, size: int, version: int,
                 sha256: str | None, ranges: RangeSet, dirty: bool = False) -> None:
        self.cache = cache
        self.key = key
        self.token = token
        self.size = size
        self.version = version
        self.sha256 = sha256
        self.ranges = ranges
        self.state = ItemState.DIRTY if dirty else ItemState.CLEAN   # moved only by ``move_locked``
        self.life = Lifecycle.LIVE
        self.cond = threading.Condition(threading.Lock())
        self.fd_lock = threading.Lock()   # fetchers' writes vs. closing or swapping the fd (not readers)
        # local changes vs. their snapshot: writes, truncates, writer counts and the journal hand-over
        # (a release's submit) are serialized, so a snapshot and its size never mix two writers' states
        self.write_lock = threading.Lock()
        self.open_count = 0
        self.writers = 0
        self.error: Exception | None = None
        self.streams: list[Any] = []      # fetcher streams filling this item
        self.write_gen = 0                # bumps on every local change
        self.history = token              # names this local history (kept across copy-on-write)
        # the sha256 of this history's newest bytes the server has or the journal holds: the next
        # snapshot's parent (a server version with these bytes is our own, issue 12)
        self.parent_sha: str | None = sha256
        self._old_fds: list[int] = []
        self._hash = IncrementalHash(self._read_for_hash, self._start_writeback)
        self.fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT, 0o600)

    # --- the write-path state (item_state.py): read-only views, moved by move_locked ---
    @property
    def dirty(self) -> bool:
        """Local changes the server does not have yet."""
        return self.state.dirty

    @property
    def linked(self) -> bool:
        """The journal may hold a hard link to the data file: copy before the next change."""
        return self.state.linked

    @property
    def detached(self) -> bool:
        """Retired (replaced by a newer version or removed while open)."""
        return self.life.detached

    @property
    def closed(self) -> bool:
        """Its files are closed: nothing more is read or written."""
        return self.life.closed

    def move_locked(self, event: ItemEvent) -> None:
        """Apply ``event`` (caller holds ``cond``); an illegal one raises ``IllegalItemTransition``."""
        if event in _LIFE_EVENTS:
            self.life = next_life(self.life, event)
        else:
            self.state = next_state(self.state, event)

    def submitted(self) -> None:
        """The journal hard-linked the data file (a ``put_file`` snapshot): copy before the next change."""
        with self.cond:
            self.move_locked(ItemEvent.SUBMIT)

    @property
    def data_path(self) -> Path:
        return self.cache.data_dir / self.token

    @property
    def complete(self) -> bool:
        """All bytes are present (the hot read path checks only this)."""
        return self.ranges.contains(0, self.size)

    def present(self) -> int:
        return self.ranges.total()

    # --- filling from the network (fetcher) ---
    def store(self, offset: int, data: bytes | memoryview) -> bool:
        """Write fetched bytes at ``offset`` and wake readers; False once the item is closed.

        The write happens outside ``cond`` so readers waiting for other ranges are not stalled."""
        with self.fd_lock:
            if self.closed:
                return False
            os.pwrite(self.fd, data, offset)
        with self.cond:
            before = self.ranges.total()
            self.ranges.add(offset, offset + len(data))
            grown = self.ranges.total() - before
            self.cond.notify_all()
        if not self.detached:                 # a retired item's bytes no longer count
            self.cache.account(grown)
        return True

    def fail(self, error: Exception) -> None:
        with self.cond:
            self.error = error
            self.cond.notify_all()

    # --- local writes ---
    def prepare_write(self) -> None:
        """Break a hard link taken by the journal's snapshot (copy-on-write) before changing bytes."""
        with self.cond, self.fd_lock:
            if os.fstat(self.fd).st_nlink <= 1:
                self.move_locked(_UNLINK)      # the journal let its link go already
                return
            token = uuid.uuid4().hex
            new_path = self.cache.data_dir / token
            shutil.copyfile(self.data_path, new_path)
            self._old_fds.append(self.fd)
            self.fd = os.open(new_path, os.O_RDWR)
            os.unlink(self.data_path)         # the journal keeps its own link
            self.token = token
            self.move_locked(_UNLINK)

    def write(self, offset: int, data: bytes | memoryview) -> int:
        """Write ``data`` at ``offset`` (kept by nobody after this returns: it may be the kernel's buffer)."""
        with self.cond:
            # dirty before the bytes: never into the journal's link, and the record says so first
            self._mark_dirty_locked(next_state(self.state, _WRITE))
            os.pwrite(self.fd, data, offset)
            end = offset + len(data)
            before = self.ranges.total()
            # a write past the end leaves a hole that reads as zeros: those bytes are known here too
            # (else a read of the hole asks the server, under a name it may not hold yet: a pending move)
            self.ranges.add(min(offset, self.size), end)
            self.size = max(self.size, end)
            self._hash.feed(offset, len(data))
            grown = self.ranges.total() - before
        if not self.detached:                 # a retired item's bytes no longer count
            self.cache.account(grown)
        return len(data)

    def truncate(self, length: int) -> None:
        with self.cond:
            # dirty before the bytes: never into the journal's link, and the record says so first
            self._mark_dirty_locked(next_state(self.state, _WRITE))
            os.ftruncate(self.fd, length)
            before = self.ranges.total()
            self.ranges.remove_from(length)
            if length > self.size:
                self.ranges.add(self.size, length)      # the new tail reads as zeros
            self.size = length
            self._hash.truncated(length)
            grown = self.ranges.total() - before
        if not self.detached:                 # a retired item's bytes no longer count
            self.cache.account(grown)

    def _mark_dirty_locked(self, dirty: ItemState) -> None:
        """A local change is about to land: the item is ``dirty`` (no sha256 names its bytes any
        more), and the index on disk says so first when it did not yet for this data file (a
        clean file's first write, or the first after a copy-on-write gave it a new token), so a
        kill -9 after close(2) and before the asynchronous release still finds the file."""
        self.state = dirty
        self.write_gen += 1
        self.sha256 = None
        if not self.detached and not self.cache.records_dirty(self):
            self.cache.persist(self)

    def finish_hash(self) -> str:
        """The sha256 of the whole content (computed while sequential writes arrived)."""
        with self.cond:
            self.sha256 = self._hash.finish(self.size)
            return self.sha256

    def _read_for_hash(self, offset: int, buffer: memoryview) -> int:
        with self.fd_lock:
            if self.closed:
                raise OSError(errno.EBADF, "cache item closed")
            return os.preadv(self.fd, [buffer], offset)

    def _start_writeback(self, start: int, end: int) -> None:
        """Start writing ``[start, end)`` to disk now, so the fsync of the journal's snapshot is short."""
        with self.fd_lock:
            if not self.closed:
                start_writeback(self.fd, start, end - start)

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def sync(self) -> None:
        os.fsync(self.fd)

    def close_fds(self) -> None:
        """Stop the streams and close the files (a stream never writes to a closed fd)."""
        with self.cond:
            self.move_locked(ItemEvent.CLOSE)
            for stream in list(self.streams):
                stream.cancel()
            self.cond.notify_all()
        with self.fd_lock:
            for fd in [self.fd, *self._old_fds]:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._old_fds = []

    def record(self) -> dict[str, Any]:
        return {"token": self.token, "size": self.size, "version": self.version, "sha256": self.sha256,
                "ranges": self.ranges.to_list(), "dirty": self.dirty, "atime": time.time(),
                "write_gen": self.write_gen, "history": self.history, "parent_sha": self.parent_sha}


class Cache:
    """Cached file items under a size quota with LRU eviction."""

    def __init__(self, root: Path, quota_bytes: int) -> None:
        self.root = Path(root)
        self.data_dir = self.root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.quota = quota_bytes
        self.index = CacheIndex(self.root / "index")
        self._lock = threading.RLock()
        self._items: dict[ItemKey, Item] = {}
        self._pins: set[ItemKey] = {tuple(p) for p in self.index.get(_PINS_KEY, [])}
        self._used = self._scan_used()

    def _scan_used(self) -> int:
        return sum(sum(e - s for s, e in rec["ranges"]) for _, rec in self.index.items("item\0"))

    # --- item lifecycle ---
    def open(self, key: ItemKey, *, version: int, sha256: str | None, size: int) -> Item:
        """The item holding (oaio_id, path) at this server version; opened (count +1)."""
        with self._lock:
            item = self._items.get(key) or self._load_locked(key)
            # an item open for writing is the local history even while clean: never swapped under it
            if item is not None and not item.dirty and not item.writers and (
                    item.version != version or item.sha256 != sha256 or item.size != size):
                if item.sha256 is not None and item.sha256 == sha256 and item.size == size:
                    # the same bytes under another version (our own move or upload, shown by the
                    # namespace a moment before the item learns of it): its readers keep reading it
                    with item.cond:
                        item.version = max(item.version, version)
                    self.persist(item)
                else:
                    self._retire_locked(item)
                    item = None
            if item is None:
                self.enforce_quota(reserve=size)          # make room before the bytes arrive
                item = Item(self, key, uuid.uuid4().hex, size, version, sha256, RangeSet())
                os.ftruncate(item.fd, size)
                self._items[key] = item
            item.open_count += 1
            return item

    def peek(self, key: ItemKey) -> dict[str, Any] | None:
        """The state of ``key`` (its record, with ``open``) without opening it; None if not cached."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                return dict(item.record(), open=item.open_count, writers=item.writers)
            rec = self.index.get(_record_key(key))
            return dict(rec, open=0, writers=0) if rec else None

    def written_at(self, key: ItemKey) -> bool:
        """True if the item now at ``key`` is open for writing (a detached item's old key may hold
        another file since: one renamed over it, or created anew)."""
        with self._lock:
            item = self._items.get(key)
            return item is not None and item.writers > 0

    def create_local(self, key: ItemKey) -> Item:
        """A new empty dirty item (a file created on this mount); opened."""
        with self._lock:
            old = self._items.get(key) or self._load_locked(key)
            if old is not None:
                self._retire_locked(old)
            item = Item(self, key, uuid.uuid4().hex, 0, 0, None, RangeSet(), dirty=True)
            self._items[key] = item
            item.open_count += 1
            self.persist(item)
            return item

    def adopt(self, item: Item) -> None:
        """Count one more opener of an item already in memory."""
        with self._lock:
            item.open_count += 1

    def close(self, item: Item) -> None:
        """One opener is done with ``item``."""
        with self._lock:
            item.open_count -= 1
            if item.open_count > 0:
                return
            if item.detached:
                self._delete_files_locked(item)
                return
            self.persist(item)
            item.close_fds()
            self._items.pop(item.key, None)
        self.enforce_quota()

    def persist(self, item: Item) -> None:
        """Write ``item``'s record; only the access time changed (a clean release): queued, not awaited."""
        if item.detached:
            return
        rkey, rec = _record_key(item.key), item.record()
        if _same_content(self.index.get(rkey), rec):
            self.index.touch(rkey, rec)
        else:
            self.index.set(rkey, rec)

    def records_dirty(self, item: Item) -> bool:
        """True if ``item``'s index record already says its current data file is dirty."""
        rec = self.index.get(_record_key(item.key))
        return bool(rec and rec.get("dirty") and rec.get("token") == item.token)

    def install(self, key: ItemKey, src: Path, *, version: int, sha256: str | None, size: int) -> None:
        """Take a fully downloaded file (moved in) as the clean item for ``key``."""
        with self._lock:
            old = self._items.get(key)
            if old is not None and (old.open_count or old.dirty):
                return                       # someone is using it; keep theirs
            if old is None:
                rec = self.index.get(_record_key(key))
                if rec and rec.get("dirty"):
                    return
                if rec:
                    self._forget_record_locked(key, rec)
            else:
                self._retire_locked(old)
            token = uuid.uuid4().hex
            os.replace(src, self.data_dir / token)
            rec = {"token": token, "size": size, "version": version, "sha256": sha256,
                   "ranges": [[0, size]] if size else [], "dirty": False, "atime": time.time(),
                   "write_gen": 0}
            self.index.set(_record_key(key), rec)
            self._used += size

    def bulk(self) -> ContextManager[None]:
        """A context in which many index updates share one transaction (batch installs, the
        journal's reports of one batch commit)."""
        return self.index.batch()

    def mark_clean(self, item: Item, version: int, sha256: str | None, write_gen: int) -> bool:
        """The server committed ``item``'s bytes as ``version`` (unless it changed since)."""
        with self._lock, item.cond:
            if item.write_gen != write_gen or item.detached:
                return False
            item.move_locked(ItemEvent.COMMIT)
            item.version, item.sha256 = version, sha256
            item.parent_sha = sha256
            self.persist(item)
            return True

    def committed(self, key: ItemKey, version: int, sha256: str | None, write_gen: int, token: str) -> None:
        """This mount's snapshot of ``key`` (taken at ``write_gen``) is on the server as ``version``.

        The item turns clean if it was not written since; if it was, it stays dirty but its
        base version advances: the next upload of this history is based on our own commit.
        ``token`` names the history: an item created anew since (unlink + create) is not touched.
        """
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                with item.cond:
                    same_bytes = item.sha256 is not None and item.sha256 == sha256
                    if item.detached or not (item.history == token or same_bytes):
                        return
                    if item.history == token and item.write_gen == write_gen:
                        item.move_locked(ItemEvent.COMMIT)
                        item.sha256 = sha256
                        item.parent_sha = sha256
                    elif not (item.dirty or same_bytes):
                        return
                    item.version = version
                    self.persist(item)
                return
            rec = self.index.get(_record_key(key))
            same_bytes = rec is not None and rec.get("sha256") is not None and rec.get("sha256") == sha256
            if rec and (rec.get("dirty") or same_bytes) and (rec.get("history", token) == token or same_bytes):
                rec.update(version=version, dirty=bool(rec.get("dirty")) and rec.get("write_gen") != write_gen)
                self.index.set(_record_key(key), rec)

    def moved_committed(self, key: ItemKey, base_version: int, version: int) -> None:
        """This mount's move to ``key`` is on the server as ``version``; a local history that was
        at ``base_version`` (the moved one) continues from there."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                with item.cond:
                    if not item.detached and item.version == base_version:
                        item.version = version
                        self.persist(item)
                return
            rec = self.index.get(_record_key(key))
            if rec and rec.get("version") == base_version:
                rec.update(version=version)
                self.index.set(_record_key(key), rec)

    def dirty_size(self, key: ItemKey) -> int | None:
        """The size of ``key``'s local changes while they are in memory (None: no local changes open).

        Lock-free: the dict lookup is atomic, and a size read during a write is one of the two states."""
        item = self._items.get(key)
        if item is None or not item.dirty or item.detached:
            return None
        return item.size

    def mark_clean_key(self, key: ItemKey, version: int, sha256: str | None, write_gen: int) -> None:
        """Like :meth:`mark_clean` for an item that may only exist on disk by now."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self.mark_clean(item, version, sha256, write_gen)
                return
            rec = self.index.get(_record_key(key))
            if rec and rec.get("dirty") and rec.get("write_gen") == write_gen:
                rec.update(dirty=False, version=version)
                self.index.set(_record_key(key), rec)

    def repair_record(self, key: ItemKey, size: int, sha256: str) -> None:
        """After a crash: the data file is the truth; make the record describe all of it."""
        with self._lock:
            rec = self.index.get(_record_key(key))
            if rec is None or key in self._items:
                return
            before = sum(e - s for s, e in rec["ranges"])
            rec.update(size=size, sha256=sha256, ranges=[[0, size]] if size else [])
            self.index.set(_record_key(key), rec)
            self._used += size - before

    def drop_if_unchanged(self, key: ItemKey, write_gen: int) -> None:
        """Forget local bytes that ended up as a conflict copy (unless written again since)."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                if item.write_gen == write_gen and not item.writers:
                    self._retire_locked(item)
                return
            rec = self.index.get(_record_key(key))
            if rec and rec.get("write_gen") == write_gen:
                self._forget_record_locked(key, rec)

    # --- namespace changes ---
    def rename(self, oaio_id: str, src: str, dst: str, tree: bool = True) -> None:
        """Move the items of a file or folder to the new path."""
        with self._lock:
            self.remove(oaio_id, dst, tree)
            for key in self._keys_under_locked(oaio_id, src, tree):
                new_key = (oaio_id, dst + key[1][len(src):])
                item = self._items.pop(key, None)
                rec = self.index.pop(_record_key(key), None)
                if item is not None:
                    item.key = new_key
                    self._items[new_key] = item
                    self.persist(item)
                elif rec is not None:
                    self.index.set(_record_key(new_key), rec)

    def remove(self, oaio_id: str, path: str | None = None, tree: bool = True) -> None:
        """Drop the items of a file, a folder (``path`` prefix) or a whole object (``None``)."""
        with self._lock:
            for key in self._keys_under_locked(oaio_id, path, tree):
                item = self._items.get(key)
                if item is not None:
                    self._retire_locked(item)
                else:
                    rec = self.index.get(_record_key(key))
                    if rec:
                        self._forget_record_locked(key, rec)

    # --- pins ---
    def pin(self, oaio_id: str, path: str) -> None:
        with self._lock:
            self._pins.add((oaio_id, path))
            self.index.set(_PINS_KEY, sorted(self._pins))

    def unpin(self, oaio_id: str, path: str) -> None:
        with self._lock:
            self._pins = {p for p in self._pins
                          if not (p[0] == oaio_id and (not path or p[1] == path or p[1].startswith(path + "/")))}
            self.index.set(_PINS_KEY, sorted(self._pins))

    def is_pinned(self, key: ItemKey) -> bool:
        with self._lock:
            return any(p[0] == key[0] and (not p[1] or key[1] == p[1] or key[1].startswith(p[1] + "/"))
                       for p in self._pins)

    def pins(self) -> list[ItemKey]:
        with self._lock:
            return sorted(self._pins)

    # --- quota ---
    def account(self, delta: int) -> None:
        if delta:
            with self._lock:
                self._used += delta

    @property
    def used(self) -> int:
        return self._used

    def enforce_quota(self, reserve: int = 0) -> None:
        """Evict least recently used items (not open, dirty or pinned) until ``reserve`` more bytes fit.

        Once over the quota it evicts down to a low-water mark, so the index is scanned rarely.
        """
        with self._lock:
            if self._used + reserve <= self.quota:
                return
            target = int(self.quota * EVICT_TO_FRACTION)
            candidates = []
            for rkey, rec in self.index.items("item\0"):
                _, oaio_id, path = rkey.split("\0", 2)
                key = (oaio_id, path)
                if not rec or rec.get("dirty") or key in self._items or self.is_pinned(key):
                    continue
                candidates.append((rec.get("atime", 0), key, rec))
            candidates.sort()
            for _, key, rec in candidates:
                if self._used + reserve <= target:
                    break
                log.debug("evicting %s/%s from the cache", *key)
                self._forget_record_locked(key, rec)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"used_bytes": self._used, "quota_bytes": self.quota, "open_items": len(self._items),
                    "pins": [list(p) for p in self._pins]}

    def dirty_records(self) -> list[tuple[ItemKey, dict[str, Any]]]:
        """Items with local changes (for start-up recovery)."""
        out = []
        for rkey, rec in self.index.items("item\0"):
            if rec and rec.get("dirty"):
                _, oaio_id, path = rkey.split("\0", 2)
                out.append(((oaio_id, path), rec))
        return out

    def close_all(self) -> None:
        with self._lock:
            for item in list(self._items.values()):
                self.persist(item)
                item.close_fds()
            self._items.clear()
            self.index.close()

    # --- internals ---
    def _load_locked(self, key: ItemKey) -> Item | None:
        rec = self.index.get(_record_key(key))
        if not rec:
            return None
        if not (self.data_dir / rec["token"]).exists():
            self._forget_record_locked(key, rec)
            return None
        item = Item(self, key, rec["token"], rec["size"], rec["version"], rec["sha256"],
                    RangeSet(tuple(r) for r in rec["ranges"]), dirty=rec.get("dirty", False))
        item.write_gen = rec.get("write_gen", 0)
        item.history = rec.get("history", item.history)
        item.parent_sha = rec.get("parent_sha", item.parent_sha)
        self._items[key] = item
        return item

    def _retire_locked(self, item: Item) -> None:
        """Take ``item`` out of the index; delete its bytes now or when its last opener leaves."""
        self._items.pop(item.key, None)
        self.index.pop(_record_key(item.key), None)
        with item.cond:
            item.move_locked(ItemEvent.DETACH)
            item.cond.notify_all()
        self._used -= item.present()
        if item.open_count == 0:
            self._delete_files_locked(item)
        # open readers keep their version (close-to-open): its streams go on (carts pin the blob)

    def _delete_files_locked(self, item: Item) -> None:
        item.close_fds()
        try:
            os.unlink(item.data_path)
        except FileNotFoundError:
            pass

    def _forget_record_locked(self, key: ItemKey, rec: dict[str, Any]) -> None:
        self.index.pop(_record_key(key), None)
        self._used -= sum(e - s for s, e in rec["ranges"])
        try:
            os.unlink(self.data_dir / rec["token"])
        except FileNotFoundError:
            pass

    def _keys_under_locked(self, oaio_id: str, path: str | None, tree: bool = True) -> list[ItemKey]:
        """The cached keys of a file (``tree=False``: no index scan), a folder or a whole object."""
        if path is not None and not tree:
            key = (oaio_id, path)
            return [key] if key in self._items or _record_key(key) in self.index else []
        keys: set[ItemKey] = set()
        prefix = "item\0" + oaio_id + "\0"
        keys.update((oaio_id, rkey[len(prefix):]) for rkey, _ in self.index.items(prefix))
        keys.update(k for k in self._items if k[0] == oaio_id)
        if path is None:
            return sorted(keys)
        return sorted(k for k in keys if k[1] == path or k[1].startswith(path + "/"))

