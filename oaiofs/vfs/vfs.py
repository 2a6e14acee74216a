"""Vfs: the drive's file operations in plain Python types — FUSE-free.

``fuse_ops.OaioFuseOps`` only converts between FUSE and these methods; tests can
drive a ``Vfs`` directly. Paths are mount paths (``/`` = the root holding one
folder per object). Errors are ``OaioError`` subclasses whose ``errno`` is what
the caller should see.

Collaborators (injected): :class:`Namespace` (metadata), :class:`Cache` (bytes on
disk), :class:`Fetcher` (filling the cache) and a journal (durable queue of changes
for the server), reached through :class:`WriteBack`; :class:`Xattrs` answers the
extended attributes.

Lock ordering (outermost first): ``Vfs._follow_lock`` → ``Namespace._lock`` → ``Cache._lock`` →
``Item.cond``; ``WriteBack._lock`` and ``Vfs._held_lock`` are leaves. No lock is
held across network I/O (``journal.submit`` is a local fsync).
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from .. import protocol
from ..errors import AlreadyExists, Forbidden, InvalidValue, NotEmpty, NotFound, Unavailable
from .cache import Cache, Item, ItemKey
from .counters import COUNTERS
from .errors import (BadHandle, CrossDevice, IsADirectory, NotADirectory, NotCached, NotPermitted, ReadOnly,
                     check_name_lengths)
from .fetcher import Candidate, Fetcher, ReadState
from .handles import FileHandle, HandleTable, OpenFile
from .metadata import MetadataOps
from .namespace import Namespace
from .nodes import Attr, Node, node_attr, safe_name
from .opstore import Op
from .values_file import ValuesFile, parse_values
from .writeback import JournalLike, WriteBack
from .xattrs import Xattrs

log = logging.getLogger(__name__)

MOVE_WAIT_S = 30.0


@dataclass(frozen=True)
class VfsOptions:
    """Tunables of the drive (the FUSE-level timeouts live in fuse_ops)."""

    small_file_bytes: int = 1 << 20        # files up to this size are fetched in batches
    batch_max_files: int = 1000
    batch_max_bytes: int = 32 << 20
    app_id: str = "oaiofs-drive"
    device_id: str = "drive"


class Vfs:
    """The mount's operations."""

    def __init__(self, namespace: Namespace, cache: Cache, fetcher: Fetcher, journal: JournalLike,
                 options: VfsOptions | None = None,
                 extra_status: Callable[[], dict[str, Any]] | None = None) -> None:
        self.ns = namespace
        self.cache = cache
        self.fetcher = fetcher
        self.journal = journal
        self.options = options or VfsOptions()
        self.handles = HandleTable()
        self.extra_status = extra_status or (lambda: {})
        self.read_only: Callable[[], str | None] = lambda: None   # a reason makes every change EROFS
        self.uid, self.gid = os.getuid(), os.getgid()
        self.writeback = WriteBack(journal, namespace, cache)
        fetcher.settle = self._wait_for_move_onto
        self.xattrs = Xattrs(namespace, cache, fetcher, self.writeback.pending_ops,
                             lambda: self.journal.status(), self.status)
        self._held_lock = threading.Lock()
        self._follow_lock = threading.Lock()         # reader handles moving to a newer version
        self._held: dict[ItemKey, list[Item]] = {}   # clean items open for reading (close-to-open sizes)
        self.meta = MetadataOps(namespace, self.writeback.submit, self.writeback.submit_meta, self._inner_path, self._parent_of)

    # ------------------------------------------------------------------ metadata
    def getattr(self, path: str) -> Attr:
        node = self.ns.resolve(path)
        attr = node_attr(node)
        if node.kind == "root":
            return replace(attr, nlink=2 + len(self.ns.root_names()))
        if node.kind != "file":
            return attr
        local = self.cache.dirty_size((node.oaio_id, node.path))
        if local is not None:
            # the latest local state wins over the namespace, which learns of a write only at
            # its release (the kernel computes O_APPEND offsets and clamps reads with this size)
            return attr if local == attr.size else replace(attr, size=local)
        if self._held:
            held = self._held.get((node.oaio_id, node.path))
            if (held and held[0].key == (node.oaio_id, node.path) and not node.entry.local  # type: ignore[union-attr]
                    and held[0].version != node.entry.version and not held[0].dirty  # type: ignore[union-attr]
                    and held[0].size > attr.size):
                # close-to-open: while a reader holds an older, longer version, its size stays visible
                # (the kernel clamps reads to the size it was last told); a longer new version shows
                # its size, and reads past the held end switch to it (``_follow_newer``: tail -f)
                attr = replace(attr, size=held[0].size)
        return attr

    def readdir(self, path: str) -> list[tuple[str, Attr]]:
        node = self.ns.resolve(path)
        if not node.is_dir:
            raise NotADirectory(f"{path} is not a folder")
        return [(name, node_attr(child)) for name, child in self.ns.list_dir(node)]

    def statfs(self) -> dict[str, int]:
        block = 4096
        quota, used = self.cache.quota, self.cache.used
        free = max(quota - used, 0) // block
        return {"f_bsize": block, "f_frsize": block, "f_blocks": quota // block, "f_bfree": free,
                "f_bavail": free, "f_files": len(self.ns.object_ids()) + 1_000_000, "f_ffree": 1_000_000,
                "f_favail": 1_000_000, "f_namemax": protocol.MAX_NAME_BYTES}

    # ------------------------------------------------------------------ open / create
    def open(self, path: str, flags: int) -> tuple[int, bool]:
        """Open a file; returns (fh, keep_cache) — keep_cache when the cached version is unchanged."""
        node = self.ns.resolve(path)
        if node.is_dir:
            raise IsADirectory(f"{path} is a folder")
        MetadataOps.refuse_link(node, path)
        writing = (flags & os.O_ACCMODE) != os.O_RDONLY or bool(flags & os.O_TRUNC)
        view = node.view
        assert view is not None
        if writing:
            self._check_writable(path)
        if writing and not view.writable:
            raise Forbidden(f"{path}: read-only (access right {view.access_right!r})")
        if node.kind == "values":
            text = b"" if flags & os.O_TRUNC else view.values_bytes
            values = ValuesFile(view.oaio_id, writing, dict(view.values), view.version, text,
                                dirty=bool(flags & os.O_TRUNC), submit=self._submit_new_values,
                                last_failure=self.writeback.last_failure)
            return self.handles.add(values), False
        item, keep_cache = self._open_item(node)
        try:
            unfilled = self._begin_write(item, truncate=bool(flags & os.O_TRUNC)) if writing else False
        except BaseException:
            self.cache.close(item)
            raise
        assert node.entry is not None
        fh = self.handles.add(FileHandle(view.oaio_id, item, writing, node.entry.version, unfilled=unfilled,
                                         files=self))
        if not writing:
            with self._held_lock:
                self._held.setdefault(item.key, []).append(item)
        return fh, keep_cache and not writing

    def create(self, path: str, mode: int = 0o644) -> int:
        """Create (or truncate) a regular file inside an object."""
        self._check_writable(path)
        parent, name = self._parent_of(path)
        if parent.kind == "root":
            raise NotPermitted(f"{path}: only folders (objects) can be created at the root")
        view = parent.view
        assert view is not None
        if not view.writable:
            raise Forbidden(f"{path}: read-only (access right {view.access_right!r})")
        inner = self._inner_path(parent, name)
        if inner == protocol.VALUES_FILE:
            fh, _ = self.open(path, os.O_WRONLY | os.O_TRUNC)
            return fh
        try:
            existing = self.ns.resolve(path)
        except NotFound:
            existing = None
        if existing is not None:
            if existing.is_dir:
                raise IsADirectory(f"{path} is a folder")
            fh, _ = self.open(path, os.O_RDWR | os.O_TRUNC)
            return fh
        item = self.cache.create_local((view.oaio_id, inner))
        item.writers += 1
        self.ns.set_open_file(view.oaio_id, inner, 0, time.time())
        self.ns.update_open_file(view.oaio_id, inner, mode=protocol.validate_mode(mode & 0o7777))
        return self.handles.add(FileHandle(view.oaio_id, item, True, 0, wrote=True, files=self))

    def _open_item(self, node: Node) -> tuple[Item, bool]:
        view, entry = node.view, node.entry
        assert view is not None and entry is not None
        key = (view.oaio_id, entry.path)
        before = self.cache.peek(key)
        if entry.local and (before is None or not before["dirty"]):
            ops = self.writeback.pending_ops(view.oaio_id)
            # the newest op that put bytes here: a put_file, or a move onto this path (then the
            # bytes are the moved file's, cached or on the server once the move is applied)
            last = next((o for o in reversed(ops) if (o.kind == "put_file" and o.path == entry.path) or (
                o.kind == "move" and (o.dst == entry.path or entry.path.startswith(o.dst + "/")))), None)
            put = last if last is not None and last.kind == "put_file" else None
            if (put is not None and put.data_file and (before is None or before["sha256"] != put.sha256)
                    and (before is None or not before["open"])):     # never swap an item others hold
                return self._open_from_journal(key, put), False
            if before is None:
                self._wait_for_move(entry.path, ops)
        # the kernel may keep its pages only if these exact bytes were cached before this open
        keep = before is not None and (before["dirty"] or (before["version"] == entry.version
                                                           and before["sha256"] == entry.sha256))
        if entry.local and before is not None:
            # local changes pending: the cached item is this mount's history, whatever version the
            # namespace shows meanwhile (it learns of our own commits a little later)
            item = self.cache.open(key, version=before["version"], sha256=before["sha256"], size=before["size"])
            return item, keep
        if before is None and 0 < entry.size <= self.options.small_file_bytes:
            self._fetch_small(node)
        item = self.cache.open(key, version=entry.version, sha256=entry.sha256, size=entry.size)
        return item, keep

    def _open_from_journal(self, key: ItemKey, op: Op) -> Item:
        """A file written on this mount whose bytes live only in the journal (e.g. after a restart)."""
        item = self.cache.create_local(key)
        with open(op.data_file, "rb") as src, open(item.data_path, "r+b") as dst:  # type: ignore[arg-type]
            shutil.copyfileobj(src, dst, 1 << 20)
        item.size = op.size
        item.sha256 = item.parent_sha = op.sha256
        item.version = op.base_version or 0                      # the history continues from the op's base
        item.ranges.add(0, op.size)
        self.cache.account(op.size)
        self.writeback.track(op, item)                           # clean once the journal applies it
        return item

    def _wait_for_move(self, path: str, ops: list[Op]) -> None:
        """An uncached file renamed here: the server has it under its new name once the move is applied."""
        move = next((o for o in reversed(ops) if o.kind == "move"
                     and (o.dst == path or path.startswith(o.dst + "/"))), None)
        if move is not None:
            try:
                self.journal.wait(move, timeout=MOVE_WAIT_S)
            except TimeoutError:
                raise Unavailable(f"{path}: renamed here, not yet on the server, and not cached") from None

    def _wait_for_move_onto(self, item: Item) -> None:
        """Before fetching ``item`` (a partly cached file renamed here): its queued move first. A
        detached item (a reader's version of a file replaced since) keeps its old name: no wait."""
        if not item.detached:
            self._wait_for_move(item.key[1], self.writeback.pending_ops(item.key[0]))

    def _fetch_small(self, node: Node) -> None:
        """Fetch a small file together with other small uncached files (same object first)."""
        view, entry = node.view, node.entry
        assert view is not None and entry is not None
        wanted = Candidate((view.oaio_id, entry.path), entry.version, entry.sha256, entry.size)
        companions: list[Candidate] = []
        budget = self.options.batch_max_bytes - entry.size
        views = [view] + [v for oid in self.ns.object_ids() if oid != view.oaio_id
                          for v in [self.ns.view(oid)] if v is not None]
        for other in views:
            for e in other.entries.values():
                if len(companions) + 1 >= self.options.batch_max_files or budget <= 0:
                    break
                if (e.kind != "file" or e.local or not 0 < e.size <= self.options.small_file_bytes
                        or e.size > budget or (other.oaio_id, e.path) == wanted.key):
                    continue
                if self.cache.peek((other.oaio_id, e.path)) is None:
                    companions.append(Candidate((other.oaio_id, e.path), e.version, e.sha256, e.size))
                    budget -= e.size
        self.fetcher.fetch_batch(wanted, companions)

    def _begin_write(self, item: Item, truncate: bool) -> bool:
        """Make ``item`` writable; True if its old bytes could not be fetched (offline) yet.

        libfuse2 strips ``O_TRUNC`` from ``open`` and sends ``truncate(0)`` after it, so a
        ``> file`` of an uncached file offline must not fail at open: the fill is retried at the
        first write or non-zero truncate of the handle (``_fill_before_change``)."""
        unfilled = False
        if not truncate and not item.dirty:
            try:
                self.fetcher.fill(item)                      # network: before taking the write lock
            except NotCached:
                unfilled = True
        with item.write_lock:
            item.prepare_write()
            if truncate:
                self.writeback.changed(item.key)
                item.truncate(0)
                self.ns.set_open_file(item.key[0], item.key[1], 0, time.time())
            item.writers += 1
        return unfilled

    def _fill_before_change(self, handle: FileHandle, keeps: int) -> None:
        """Fetch the old bytes an offline-opened handle needs before its first change (``keeps`` of them)."""
        if keeps > 0 and not handle.item.dirty:
            self.fetcher.fill(handle.item)       # still offline: EIO, nothing changed
        handle.unfilled = False

    # ------------------------------------------------------------------ read / write
    def read(self, fh: int, offset: int, size: int) -> bytes:
        buf = bytearray(size)
        n = self.read_into(fh, offset, memoryview(buf))
        return bytes(buf[:n])

    def read_into(self, fh: int, offset: int, buf: memoryview) -> int:
        """Read into ``buf`` (the kernel's buffer in the mount: no extra copy); returns the byte count."""
        return self.handles.get(fh).read_into(offset, buf)

    def read_file(self, handle: FileHandle, offset: int, buf: memoryview) -> int:
        """``read_into`` of an attached file (:class:`FileHandle` calls it)."""
        size = len(buf)
        item = handle.item
        if offset + size > item.size and not handle.writable:
            item = self._follow_newer(handle)
        if not (item.dirty or item.complete):
            self.fetcher.wait_for_read(item, handle.read_state, offset, size)
        else:
            COUNTERS.cache_hits += 1
        n = min(size, item.size - offset)
        return os.preadv(item.fd, [buf[:n]], offset) if n > 0 else 0

    def _follow_newer(self, handle: FileHandle) -> Item:
        """A read past the end of a reader's version: if a longer newer version arrived (another
        device appended), the handle moves to it, as on NFS, so ``tail -f`` sees the new lines."""
        old = handle.item
        view = self.ns.view(old.key[0])
        entry = view.entries.get(old.key[1]) if view is not None else None
        if (old.dirty or entry is None or entry.kind != "file" or entry.local or entry.version == old.version
                or entry.size <= old.size):
            return old                                   # the common case: a read at the end of the file
        with self._follow_lock:
            if handle.item is not old:                   # a concurrent read of this handle moved it
                return handle.item
            new = self.cache.open(old.key, version=entry.version, sha256=entry.sha256, size=entry.size)
            handle.item, handle.base_version, handle.read_state = new, entry.version, ReadState()
            with self._held_lock:
                self._held.setdefault(new.key, []).append(new)
            self._unhold(old)
        self.cache.close(old)
        return new

    def write(self, fh: int, offset: int, data: bytes | memoryview) -> int:
        """Write through handle ``fh``; ``data`` may be the kernel's buffer, so nothing keeps it."""
        handle = self.handles.get(fh)
        if not handle.writable:
            raise BadHandle("file handle is not open for writing")
        return handle.write(offset, data)

    def write_file(self, handle: FileHandle, offset: int, data: bytes | memoryview) -> int:
        """``write`` of an attached file (:class:`FileHandle` calls it)."""
        item = handle.item
        if handle.unfilled:
            self._fill_before_change(handle, item.size)      # may fetch: before the write lock
        with item.write_lock:
            if item.linked:
                item.prepare_write()
            written = item.write(offset, data)
            handle.wrote = True
            if item.detached:                # removed or replaced while open: nothing to show or upload
                return written
            self.writeback.wrote(item, offset, written)
            self.ns.set_open_file(handle.oaio_id, item.key[1], item.size, time.time())
        return written

    def truncate(self, path: str, length: int, fh: int | None = None) -> None:
        if fh is not None:
            handle = self.handles.get(fh)
            self._truncate_handle(handle, length)
            return
        node = self.ns.resolve(path)
        if node.kind == "values":
            # open(values.json, O_TRUNC) arrives as open + truncate(path) without a handle (libfuse2):
            # the truncate belongs to the handles open for writing, which hold the new text
            editing = [h for h in self.handles.all() if h.path == protocol.VALUES_FILE and h.writable
                       and h.oaio_id == node.oaio_id]
            for handle in editing:
                self._truncate_handle(handle, length)
            if editing:
                return
        own = self.open(path, os.O_WRONLY)[0]
        try:
            self._truncate_handle(self.handles.get(own), length)
            if node.kind == "values":
                self.flush(own)                 # `truncate -s 0 values.json`: EINVAL, values unchanged
        finally:
            self.release(own)

    def _truncate_handle(self, handle: OpenFile, length: int) -> None:
        if not handle.writable:
            raise Forbidden("file is not open for writing")
        handle.truncate(length)

    def truncate_file(self, handle: FileHandle, length: int) -> None:
        """``truncate`` of an attached file (:class:`FileHandle` calls it)."""
        item = handle.item
        if handle.unfilled:
            self._fill_before_change(handle, min(length, item.size))   # may fetch: before the write lock
        with item.write_lock:
            if item.linked:
                item.prepare_write()
            self.writeback.changed(item.key)
            item.truncate(length)
            handle.wrote = True
            if not item.detached:
                self.ns.set_open_file(handle.oaio_id, item.key[1], item.size, time.time())

    # ------------------------------------------------------------------ flush / release / fsync
    def flush(self, fh: int) -> None:
        """close(2): values.json is validated and submitted here, so a bad document fails close."""
        self.handles.get(fh).flush()

    def release(self, fh: int) -> None:
        """Last close of a handle: a changed file goes to the journal before this returns.

        The handle stays in the table until then (``status`` and a folder's ``utimens`` look
        for files not yet in the journal there), and leaves it however the release ends."""
        handle = self.handles.get(fh)
        try:
            handle.release()
        finally:
            self.handles.pop(fh)

    def release_file(self, handle: FileHandle) -> None:
        """``release`` of an attached file (:class:`FileHandle` calls it)."""
        item = handle.item
        if not handle.writable:
            self._unhold(item)
        # the record the hand-over changes and the one close touches: one index write, made
        # before the release returns, and not while the hand-over holds the write-back lock
        with self.cache.bulk():
            try:
                if handle.writable:
                    with item.write_lock:
                        item.writers -= 1
                        if item.writers == 0:
                            self.writeback.submit_file(item)
            finally:
                self.cache.close(item)

    def _unhold(self, item: Item) -> None:
        with self._held_lock:
            for key, items in list(self._held.items()):
                if item in items:
                    items.remove(item)
                    if not items:
                        del self._held[key]
                    return

    def _forget_held(self, oaio_id: str, path: str, moved_from: str | None = None) -> None:
        """``path`` was replaced or removed here: readers of what it was no longer set its size
        (a file renamed from ``moved_from`` takes its readers along)."""
        with self._held_lock:
            for key in [k for k in self._held if k[0] == oaio_id and (k[1] == path or k[1].startswith(path + "/"))]:
                del self._held[key]
            if moved_from is not None:
                for key in [k for k in self._held if k[0] == oaio_id
                            and (k[1] == moved_from or k[1].startswith(moved_from + "/"))]:
                    self._held[(oaio_id, path + key[1][len(moved_from):])] = self._held.pop(key)

    def fsync(self, fh: int) -> None:
        """Return once this file's bytes are durable in the journal (server reachable or not).

        Raises the error of the file's previous upload if the server refused it for good."""
        self.handles.get(fh).fsync()

    def fsync_file(self, handle: FileHandle) -> None:
        """``fsync`` of an attached file (:class:`FileHandle` calls it)."""
        item = handle.item
        with item.write_lock:
            key = item.key
            failure = self.writeback.last_failure(key)
            if item.dirty and handle.writable:
                self.writeback.submit_file(item)
        if failure is not None:
            raise failure

    def _submit_new_values(self, oaio_id: str, values: dict[str, Any], base_values: dict[str, Any],
                           base_version: int | None) -> Op:
        op = Op("put_values", oaio_id, values=values, base_values=base_values,
                base_version=base_version or None, mtime=time.time())
        return self.writeback.submit(op, key=(oaio_id, protocol.VALUES_FILE))

    # ------------------------------------------------------------------ namespace changes
    def mkdir(self, path: str, mode: int = 0o755) -> None:
        parent, name = self._parent_of(path)
        self._check_writable(path)
        self._must_not_exist(path)
        if parent.kind == "root":
            self._refuse_metadata(name, path)
            values = {"_name": name}
            oaio_id = protocol.make_oaio_id(self.options.app_id, self.ns.me, self.options.device_id,
                                            values, protocol.now_stamp())
            self.writeback.submit(Op("create_object", oaio_id, values=values, mtime=time.time()))
            return
        self._need_update(parent, path)
        inner = self._inner_path(parent, name)
        self.writeback.submit(Op("mkdir", parent.oaio_id, inner, mtime=time.time()))
        bits = protocol.validate_mode(mode & 0o7777)
        if bits != protocol.DEFAULT_DIR_MODE:
            self.writeback.submit(Op("set_meta", parent.oaio_id, inner, mode=bits))

    def rmdir(self, path: str) -> None:
        node = self.ns.resolve(path)
        self._check_writable(path)
        if not node.is_dir:
            raise NotADirectory(f"{path} is not a folder")
        if node.kind == "root":
            raise NotPermitted("the root cannot be removed")
        view = node.view
        assert view is not None
        if node.kind == "object" and not view.deletable:
            raise Forbidden(f"{path}: deleting needs the right D or C (you have {view.access_right!r})")
        if node.kind == "dir":
            self._need_update(node, path)
        if any(name != protocol.VALUES_FILE for name, _ in self.ns.list_dir(node)):
            raise NotEmpty(f"{path} is not empty")
        if node.kind == "object":
            self.writeback.submit(Op("delete_object", view.oaio_id, mtime=time.time()))
            self.cache.remove(view.oaio_id)
            return
        self.writeback.submit(Op("delete_path", view.oaio_id, node.path, mtime=time.time()))

    def unlink(self, path: str) -> None:
        node = self.ns.resolve(path)
        self._check_writable(path)
        if node.is_dir:
            raise IsADirectory(f"{path} is a folder")
        view = node.view
        assert view is not None
        if node.kind == "values":
            # values.json goes with its object (rmdir); accepting its unlink lets `rm -r obj` work
            if not view.deletable:
                raise Forbidden(f"{path}: values.json can only go with its object (needs D or C)")
            return
        self._need_update(node, path)
        assert node.entry is not None
        base = node.entry.version if node.entry.version and not node.entry.local else None
        self.writeback.submit(Op("delete_path", view.oaio_id, node.path, base_version=base, mtime=time.time()))
        self.cache.remove(view.oaio_id, node.path, tree=False)
        self.ns.clear_open_file(view.oaio_id, node.path)
        self._forget_held(view.oaio_id, node.path)

    def rename(self, old: str, new: str) -> None:
        src = self.ns.resolve(old)
        self._check_writable(old)
        dst_parent, dst_name = self._parent_of(new)
        if src.kind == "root":
            raise NotPermitted("the root cannot be renamed")
        if src.kind == "object":
            return self._rename_object(src, dst_parent, dst_name, new)
        if dst_parent.kind == "root":
            raise NotPermitted(f"{new}: only object folders live at the root")
        view = src.view
        assert view is not None and dst_parent.view is not None
        if dst_parent.view.oaio_id != view.oaio_id:
            raise CrossDevice(f"{old} -> {new}: moving between objects is a copy")
        self._need_update(src, old)
        dst_inner = self._inner_path(dst_parent, dst_name)
        if src.kind == "values":
            raise NotPermitted("values.json cannot be moved (edit it in place)")
        if dst_inner == protocol.VALUES_FILE:
            return self._rename_onto_values(src, view.oaio_id)
        if dst_inner == src.path:
            return None
        if dst_inner.startswith(src.path + "/"):
            raise InvalidValue(f"cannot move {old} into itself")
        try:
            target = self.ns.resolve(new)
        except NotFound:
            target = None
        if target is not None:
            if target.is_dir and not src.is_dir:
                raise IsADirectory(f"{new} is a folder")
            if src.is_dir and not target.is_dir:
                raise NotADirectory(f"{new} is not a folder")
            if target.is_dir and self.ns.list_dir(target):
                raise NotEmpty(f"{new} is not empty")
        only_here = self._only_here(view.oaio_id, src)
        if only_here:
            # a new file still open for writing: nothing to move on the server yet
            if target is not None and not target.is_dir:
                self.writeback.submit(Op("delete_path", view.oaio_id, dst_inner, mtime=time.time()))
        else:
            self.writeback.submit(Op("move", view.oaio_id, src.path, dst=dst_inner, mtime=time.time()),
                                  base=lambda: self._history_version(view.oaio_id, src))
        folders = src.is_dir or (target is not None and target.is_dir)
        src_path = src.path                   # move_open_files renames the open file's Entry in place
        self.writeback.moved(view.oaio_id, src_path, dst_inner, tree=folders)
        if target is not None and not target.is_dir:
            # the replaced file may still be open with unsaved writes (the kernel sends a release
            # after close returns): its size must not shadow the renamed file until that release
            self.ns.clear_open_file(view.oaio_id, dst_inner)
        if not self.ns.move_open_files(view.oaio_id, src_path, dst_inner) and only_here:
            self.ns.local_changed(view.oaio_id)      # no move op replays it: show the new name
        self._forget_held(view.oaio_id, dst_inner, src_path)

    def _history_version(self, oaio_id: str, node: Node) -> int | None:
        """The server version a file's local history is at (None for folders): a move based on it
        lets the history continue at the new name (the journal rebases it after pending uploads)."""
        if node.kind != "file" or node.entry is None:
            return None
        rec = self.cache.peek((oaio_id, node.path))
        return int(rec["version"]) if rec is not None else node.entry.version

    def _only_here(self, oaio_id: str, node: Node) -> bool:
        """A file that exists only on this mount (created, not yet handed to the journal)."""
        if node.kind != "file":
            return False
        path = node.path

        def under(top: str) -> bool:
            return bool(top) and (path == top or path.startswith(top + "/"))
        last = next((op for op in reversed(self.writeback.pending_ops(oaio_id))
                     if under(op.path) or under(op.dst)), None)
        if last is None:
            doc = self.ns.doc(oaio_id) or {}
            return not any(f["path"] == path for f in doc.get("files", []))
        # the newest queued op naming the path decides: moved or deleted away (a file created here
        # since is new), or put/moved here (the server will have it)
        return last.kind in ("move", "delete_path") and under(last.path) and not under(last.dst)

    def _rename_object(self, src: Node, dst_parent: Node, dst_name: str, new: str) -> None:
        if dst_parent.kind != "root":
            raise CrossDevice("object folders stay at the root")
        view = src.view
        assert view is not None
        if not view.writable:
            raise Forbidden(f"renaming {self.ns.name_of(view.oaio_id)!r} changes its _name (needs U, D or C)")
        if dst_name in self.ns.root_names():
            raise NotEmpty(f"{new} exists")
        self._refuse_metadata(dst_name, new)
        values = dict(view.values, _name=dst_name)
        self._submit_new_values(view.oaio_id, values, dict(view.values), view.version)

    def _rename_onto_values(self, src: Node, oaio_id: str) -> None:
        """The editor save pattern on values.json: write a temp file, rename it over values.json."""
        if src.kind != "file":
            raise IsADirectory("values.json is a file")
        fh, _ = self.open(self._mount_path(src), os.O_RDONLY)
        try:
            handle = self.handles.get(fh)
            assert isinstance(handle, FileHandle)
            item = handle.item
            self.fetcher.fill(item)
            text = item.read(0, item.size)
        finally:
            self.release(fh)
        values = parse_values(text)
        view = src.view
        assert view is not None
        self._submit_new_values(oaio_id, values, dict(view.values), view.version)
        self.unlink(self._mount_path(src))

    def utimens(self, path: str, times: tuple[int, int] | None) -> None:
        """Set the mtime (ns; ``UTIME_NOW``/``UTIME_OMIT`` as fusepy passes them; atime is not kept)."""
        self._check_writable(path)
        node = self.ns.resolve(path)
        if node.kind == "dir":
            self._hand_over_writes_under(node.oaio_id, node.path)
        self.meta.utimens(path, times)

    def _hand_over_writes_under(self, oaio_id: str, folder: str) -> None:
        """Queue the bytes of files written under ``folder`` before a change of its mtime.

        The kernel releases a closed file after ``close`` returns, so ``tar x`` (or ``cp -a``)
        can set a folder's mtime while the release of a new file inside is still on its way:
        the file's upload, applied after the folder's ``set_meta``, would move the folder's
        mtime again on the server. Snapshotting them here (as fsync does) keeps the order."""
        prefix = folder + "/"
        for handle in self.handles.all():
            item = getattr(handle, "item", None)
            if (item is None or not handle.writable or item.key[0] != oaio_id
                    or not item.key[1].startswith(prefix)):
                continue
            with item.write_lock:
                if item.dirty and not item.detached:
                    self.writeback.submit_file(item)

    def make_special(self, path: str) -> None:
        """hard link, mknod: refused (EPERM) — after the checks every create makes (name length)."""
        self._parent_of(path)
        raise NotPermitted(f"{path}: only regular files, folders and symbolic links can be created")

    def chmod(self, path: str, mode: int) -> None:
        """Set the permission bits (kept on the server; ``w`` stays hidden from read-only subscribers)."""
        self._check_writable(path)
        self.meta.chmod(path, mode)

    def symlink(self, target: str, path: str) -> None:
        """``ln -s target path``: the target is stored as given, never resolved by the drive."""
        self._check_writable(path)
        self.meta.symlink(target, path)

    def readlink(self, path: str) -> str:
        return self.meta.readlink(path)

    # ------------------------------------------------------------------ status / callbacks
    def status(self) -> dict[str, Any]:
        # files open for writing or being closed: their changes are not in the journal yet. Read in
        # this order (handles, journal), a file is never missed: a release submits to the journal
        # before it removes its handle.
        writing = sum(1 for h in self.handles.all() if h.writable)
        doc = dict(self.journal.status())
        doc["cache"] = self.cache.stats()
        doc["objects"] = len(self.ns.object_ids())
        doc["open_for_writing"] = writing
        doc.update(self.extra_status())
        doc["online"] = bool(doc.get("online", True)) and bool(doc.get("feed_online", True))
        named = {e.get("oaio_id") for key in ("ops", "failed", "conflicts") for e in doc.get(key, ())}
        doc["names"] = {oid: self.ns.name_of(oid) for oid in named if oid and self.ns.name_of(oid)}
        return doc

    # ------------------------------------------------------------------ helpers
    def _parent_of(self, path: str) -> tuple[Node, str]:
        parent_path, _, name = path.rstrip("/").rpartition("/")
        parent = self.ns.resolve(parent_path or "/")
        if not parent.is_dir:
            raise NotADirectory(f"{parent_path} is not a folder")
        if not name:
            raise InvalidValue(f"bad file name {name!r}")
        check_name_lengths(name, protocol.MAX_NAME_BYTES)
        if parent.kind == "root" and safe_name(name) != name:
            raise InvalidValue(f"{name!r} cannot be an object folder name")
        return parent, name

    def _inner_path(self, parent: Node, name: str) -> str:
        if parent.kind == "object":
            if name == protocol.VALUES_FILE:
                return name
            return protocol.normalize_file_path(name)
        return protocol.normalize_file_path(parent.path + "/" + name)

    def _mount_path(self, node: Node) -> str:
        assert node.view is not None
        return "/" + (self.ns.name_of(node.view.oaio_id) or node.view.oaio_id) + "/" + node.path

    def _check_writable(self, path: str) -> None:
        reason = self.read_only()
        if reason:
            raise ReadOnly(f"{path}: the drive is read-only: {reason}")

    @staticmethod
    def _refuse_metadata(name: str, path: str) -> None:
        """No object named like desktop metadata: a refused ``.Trash-<uid>`` makes GLib file managers offer
        permanent deletion instead of leaving a trash object on the server (docs/drive.md, "Delete")."""
        if protocol.is_desktop_metadata(name):
            raise NotPermitted(f"{path}: desktop metadata ({name}) cannot be an object; this drive has no "
                               "desktop trash (delete permanently)")

    def _must_not_exist(self, path: str) -> None:
        try:
            self.ns.resolve(path)
        except NotFound:
            return
        raise AlreadyExists(f"{path} exists")

    @staticmethod
    def _need_update(node: Node, path: str) -> None:
        view = node.view
        if view is None or not view.writable:
            right = view.access_right if view else "-"
            raise Forbidden(f"{path}: read-only (access right {right!r})")

