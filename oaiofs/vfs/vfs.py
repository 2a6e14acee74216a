"""Vfs: the drive's file operations in plain Python types — FUSE-free.

``fuse_ops.OaioFuseOps`` only converts between FUSE and these methods; tests can
drive a ``Vfs`` directly. Paths are mount paths (``/`` = the root holding one
folder per object). Errors are ``OaioError`` subclasses whose ``errno`` is what
the caller should see.

Collaborators (all injected): :class:`Namespace` (metadata), :class:`Cache`
(bytes on disk), :class:`Fetcher` (filling the cache), a journal (durable queue
of changes for the server) and a status callback.

Lock ordering (outermost first): ``Namespace._lock`` → ``Cache._lock`` →
``Item.cond``. The Vfs itself holds no lock of its own except ``_submit_lock``
around journal submission bookkeeping; nothing holds a lock across network I/O
except the journal's own submit (a local fsync).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol

from .. import protocol
from ..errors import (AlreadyExists, Forbidden, InvalidValue, NotEmpty, NotFound, OaioError, TooLarge,
                      Unavailable, error_from_response)
from ..client.uploads import file_sha256
from .cache import Cache, Item, ItemKey
from .errors import (BadHandle, CrossDevice, IsADirectory, NoAttribute, NotADirectory, NotPermitted, NotSupported)
from .fetcher import Candidate, Fetcher
from .handles import FileHandle, Handle, HandleTable, ValuesHandle
from .namespace import Namespace
from .nodes import Attr, Node, node_attr, safe_name
from .opstore import Op

log = logging.getLogger(__name__)

XATTR_STATUS = "user.oaio.status"
XATTR_SHA256 = "user.oaio.sha256"
XATTR_VERSION = "user.oaio.version"
XATTR_PIN = "user.oaio.pin"
XATTR_MOUNT_STATUS = "user.oaio.mount_status"
FILE_XATTRS = (XATTR_STATUS, XATTR_SHA256, XATTR_VERSION, XATTR_PIN)
FSYNC_TIMEOUT_S = 600.0
OFFLINE_FSYNC_WAIT_S = 5.0       # offline, fsync reports EIO soon (the change stays queued)
MOVE_WAIT_S = 30.0


class JournalLike(Protocol):
    """What the Vfs needs from ``vfs.journal.Journal``."""

    def submit(self, op: Op, data_source: Any = None) -> Op: ...
    def wait(self, op: Op, timeout: float | None = None) -> Op: ...
    def pending(self, oaio_id: str | None = None) -> list[Op]: ...
    def status(self) -> dict[str, Any]: ...


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
        self.uid, self.gid = os.getuid(), os.getgid()
        self._submit_lock = threading.Lock()
        self._submitted: dict[int, tuple[ItemKey, int]] = {}      # put_file op id -> (item key, write_gen)
        self._last_op: dict[ItemKey, Op] = {}                     # newest op per (oaio_id, path), for fsync
        self._applied: set[int] = set()      # ops reported applied but maybe still listed as pending
        self._held: dict[ItemKey, list[Item]] = {}   # clean items open for reading (close-to-open sizes)

    def pending_ops(self, oaio_id: str | None) -> list[Op]:
        """The journal's not-yet-applied ops (the namespace's overlay source)."""
        ops = self.journal.pending(oaio_id)
        applied = self._applied
        return [op for op in ops if op.id not in applied] if applied else ops

    # ------------------------------------------------------------------ metadata
    def getattr(self, path: str) -> Attr:
        node = self.ns.resolve(path)
        attr = node_attr(node)
        if node.kind == "file" and self._held:
            held = self._held.get((node.oaio_id, node.path))
            if held and held[0].version != node.entry.version and not held[0].dirty:  # type: ignore[union-attr]
                # close-to-open: while a reader holds an older version, its size stays visible
                # (the kernel clamps reads to the size it was last told)
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
        writing = (flags & os.O_ACCMODE) != os.O_RDONLY or bool(flags & os.O_TRUNC)
        view = node.view
        assert view is not None
        if writing and not view.writable:
            raise Forbidden(f"{path}: read-only (access right {view.access_right!r})")
        if node.kind == "values":
            text = b"" if flags & os.O_TRUNC else view.values_bytes
            handle: Handle = ValuesHandle(view.oaio_id, writing, dict(view.values), view.version,
                                          bytearray(text), dirty=bool(flags & os.O_TRUNC))
            return self.handles.add(handle), False
        item, keep_cache = self._open_item(node)
        try:
            if writing:
                self._begin_write(item, truncate=bool(flags & os.O_TRUNC))
        except BaseException:
            self.cache.close(item)
            raise
        assert node.entry is not None
        fh = self.handles.add(FileHandle(view.oaio_id, item, writing, node.entry.version))
        if not writing:
            with self._submit_lock:
                self._held.setdefault(item.key, []).append(item)
        return fh, keep_cache and not writing

    def create(self, path: str, mode: int = 0o644) -> int:
        """Create (or truncate) a regular file inside an object."""
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
        return self.handles.add(FileHandle(view.oaio_id, item, True, 0, wrote=True))

    def _open_item(self, node: Node) -> tuple[Item, bool]:
        view, entry = node.view, node.entry
        assert view is not None and entry is not None
        key = (view.oaio_id, entry.path)
        before = self.cache.peek(key)
        if entry.local and (before is None or not before["dirty"]):
            ops = self.pending_ops(view.oaio_id)
            put = next((o for o in reversed(ops) if o.kind == "put_file" and o.path == entry.path), None)
            if put is not None and put.data_file and (before is None or before["sha256"] != put.sha256):
                return self._open_from_journal(key, put), False
            if before is None:
                self._wait_for_move(entry.path, ops)
        # the kernel may keep its pages only if these exact bytes were cached before this open
        keep = before is not None and (before["dirty"] or (before["version"] == entry.version
                                                           and before["sha256"] == entry.sha256))
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
        item.sha256 = op.sha256
        item.ranges.add(0, op.size)
        self.cache.account(op.size)
        with self._submit_lock:
            self._submitted[op.id] = (key, item.write_gen)       # clean once the journal applies it
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

    def _begin_write(self, item: Item, truncate: bool) -> None:
        if truncate:
            item.prepare_write()
            item.truncate(0)
        else:
            if not item.dirty:
                self.fetcher.fill(item)
            item.prepare_write()
        item.writers += 1
        if truncate:
            self.ns.set_open_file(item.key[0], item.key[1], 0, time.time())

    # ------------------------------------------------------------------ read / write
    def read(self, fh: int, offset: int, size: int) -> bytes:
        buf = bytearray(size)
        n = self.read_into(fh, offset, memoryview(buf))
        return bytes(buf[:n])

    def read_into(self, fh: int, offset: int, buf: memoryview) -> int:
        """Read into ``buf`` (the kernel's buffer in the mount: no extra copy); returns the byte count."""
        handle = self.handles.get(fh)
        size = len(buf)
        if isinstance(handle, ValuesHandle):
            with handle.lock:
                data = handle.buffer[offset:offset + size]
            buf[:len(data)] = data
            return len(data)
        item = handle.item
        if not (item.dirty or item.complete):
            self.fetcher.wait_for_read(item, handle.read_state, offset, size)
        n = min(size, item.size - offset)
        return os.preadv(item.fd, [buf[:n]], offset) if n > 0 else 0

    def write(self, fh: int, offset: int, data: bytes) -> int:
        handle = self.handles.get(fh)
        if not handle.writable:
            raise BadHandle("file handle is not open for writing")
        if isinstance(handle, ValuesHandle):
            if offset + len(data) > protocol.MAX_VALUES_BYTES:
                raise TooLarge(f"values.json is limited to {protocol.MAX_VALUES_BYTES} bytes")
            with handle.lock:
                buf = handle.buffer
                if offset > len(buf):
                    buf.extend(b"\0" * (offset - len(buf)))
                buf[offset:offset + len(data)] = data
                handle.dirty = True
            return len(data)
        item = handle.item
        if item.linked:
            item.prepare_write()
        written = item.write(offset, data)
        handle.wrote = True
        self.ns.set_open_file(handle.oaio_id, item.key[1], item.size, time.time())
        return written

    def truncate(self, path: str, length: int, fh: int | None = None) -> None:
        if fh is not None:
            handle = self.handles.get(fh)
            self._truncate_handle(handle, length)
            return
        own = self.open(path, os.O_WRONLY)[0]
        try:
            self._truncate_handle(self.handles.get(own), length)
        finally:
            self.release(own)

    def _truncate_handle(self, handle: Handle, length: int) -> None:
        if not handle.writable:
            raise Forbidden("file is not open for writing")
        if isinstance(handle, ValuesHandle):
            with handle.lock:
                del handle.buffer[length:]
                handle.buffer.extend(b"\0" * (length - len(handle.buffer)))
                handle.dirty = True
            return
        item = handle.item
        if item.linked:
            item.prepare_write()
        item.truncate(length)
        handle.wrote = True
        self.ns.set_open_file(handle.oaio_id, item.key[1], item.size, time.time())

    # ------------------------------------------------------------------ flush / release / fsync
    def flush(self, fh: int) -> None:
        """close(2): values.json is validated and submitted here, so a bad document fails close."""
        handle = self.handles.get(fh)
        if isinstance(handle, ValuesHandle):
            self._submit_values(handle)

    def release(self, fh: int) -> None:
        """Last close of a handle: a changed file goes to the journal before this returns."""
        handle = self.handles.pop(fh)
        if isinstance(handle, ValuesHandle):
            try:
                self._submit_values(handle)
            except OaioError as err:
                log.warning("values.json of %s not saved: %s", handle.oaio_id, err.message)
            return
        item = handle.item
        if not handle.writable:
            self._unhold(item)
        try:
            if handle.writable:
                item.writers -= 1
                if item.writers == 0:
                    self._submit_file(handle)
        finally:
            self.cache.close(item)

    def _unhold(self, item: Item) -> None:
        with self._submit_lock:
            for key, items in list(self._held.items()):
                if item in items:
                    items.remove(item)
                    if not items:
                        del self._held[key]
                    return

    def fsync(self, fh: int) -> None:
        """Return once the server has committed this file's bytes (or raise why not)."""
        handle = self.handles.get(fh)
        if isinstance(handle, ValuesHandle):
            op = self._submit_values(handle)
            key = (handle.oaio_id, protocol.VALUES_FILE)
        else:
            key = handle.item.key
            op = self._submit_file(handle) if handle.item.dirty and handle.writable else None
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

    def _submit_file(self, handle: FileHandle) -> Op | None:
        item = handle.item
        if not item.dirty or item.detached:
            if item.detached:
                log.debug("%s/%s was removed while open; not uploaded", *item.key)
                self.ns.clear_open_file(*item.key)
            return None
        oaio_id, path = item.key
        sha256 = item.finish_hash()
        # base 0 = "must not exist yet" for new files; the journal rebases chained ops
        op = Op("put_file", oaio_id, path, size=item.size, sha256=sha256, mtime=time.time(),
                base_version=handle.base_version)
        with self._submit_lock:
            op = self.journal.submit(op, item.data_path)
            item.linked = True              # the journal holds a hard link: copy before the next write
            self._submitted[op.id] = (item.key, item.write_gen)
            self._last_op[item.key] = op
            self.cache.persist(item)
        self.ns.clear_open_file(oaio_id, path)
        self.ns.local_changed(oaio_id)
        return op

    def _submit_values(self, handle: ValuesHandle) -> Op | None:
        with handle.lock:
            if not handle.writable or not handle.dirty:
                return None
            text = bytes(handle.buffer)
            if text == handle.submitted:
                return None
            try:
                values = parse_values(text)
            except InvalidValue as err:
                log.warning("values.json of %s refused: %s", handle.oaio_id, err.message)
                raise
            handle.submitted = text
        return self._submit_new_values(handle.oaio_id, values, handle.base_values, handle.base_version)

    def _submit_new_values(self, oaio_id: str, values: dict[str, Any], base_values: dict[str, Any],
                           base_version: int | None) -> Op:
        op = Op("put_values", oaio_id, values=values, base_values=base_values,
                base_version=base_version or None, mtime=time.time())
        return self._submit(op, key=(oaio_id, protocol.VALUES_FILE))

    def _submit(self, op: Op, key: ItemKey | None = None) -> Op:
        with self._submit_lock:
            op = self.journal.submit(op)
            self._last_op[key or (op.oaio_id, op.path)] = op
        self.ns.local_changed(op.oaio_id)
        return op

    def recover(self) -> int:
        """Start-up: hand the journal local bytes it never got (the mount died with the file open).

        Bytes the server already has are just marked clean. Returns how many files were submitted.
        """
        queued = {(op.oaio_id, op.path) for op in self.journal.pending(None) if op.kind == "put_file"}
        submitted = 0
        for key, rec in self.cache.dirty_records():
            if key in queued:
                continue
            data = self.cache.data_dir / rec["token"]
            if not data.exists():
                continue
            sha = file_sha256(data)
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
            with self._submit_lock:
                op = self.journal.submit(op, data)
                self._submitted[op.id] = (key, rec.get("write_gen", 0))
            log.warning("%s/%s: local changes from an interrupted mount queued for upload", *key)
            submitted += 1
        if submitted:
            self.ns.local_changed(None)
        return submitted

    # ------------------------------------------------------------------ namespace changes
    def mkdir(self, path: str, mode: int = 0o755) -> None:
        parent, name = self._parent_of(path)
        self._must_not_exist(path)
        if parent.kind == "root":
            values = {"_name": name}
            oaio_id = protocol.make_oaio_id(self.options.app_id, self.ns.me, self.options.device_id,
                                            values, protocol.now_stamp())
            self._submit(Op("create_object", oaio_id, values=values, mtime=time.time()))
            return
        self._need_update(parent, path)
        self._submit(Op("mkdir", parent.oaio_id, self._inner_path(parent, name), mtime=time.time()))

    def rmdir(self, path: str) -> None:
        node = self.ns.resolve(path)
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
            self._submit(Op("delete_object", view.oaio_id, mtime=time.time()))
            self.cache.remove(view.oaio_id)
            return
        self._submit(Op("delete_path", view.oaio_id, node.path, mtime=time.time()))

    def unlink(self, path: str) -> None:
        node = self.ns.resolve(path)
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
        self._submit(Op("delete_path", view.oaio_id, node.path, base_version=base, mtime=time.time()))
        self.cache.remove(view.oaio_id, node.path)
        self.ns.clear_open_file(view.oaio_id, node.path)

    def rename(self, old: str, new: str) -> None:
        src = self.ns.resolve(old)
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
        if self._only_here(view.oaio_id, src):
            # a new file still open for writing: nothing to move on the server yet
            if target is not None and not target.is_dir:
                self._submit(Op("delete_path", view.oaio_id, dst_inner, mtime=time.time()))
        else:
            self._submit(Op("move", view.oaio_id, src.path, dst=dst_inner, mtime=time.time()))
        self.cache.rename(view.oaio_id, src.path, dst_inner)
        self.ns.move_open_files(view.oaio_id, src.path, dst_inner)
        with self._submit_lock:
            for key in [k for k in self._last_op if k[0] == view.oaio_id and k[1] == src.path]:
                self._last_op[(key[0], dst_inner)] = self._last_op.pop(key)

    def _only_here(self, oaio_id: str, node: Node) -> bool:
        """A file that exists only on this mount (created, not yet handed to the journal)."""
        if node.kind != "file":
            return False
        doc = self.ns.doc(oaio_id) or {}
        if any(f["path"] == node.path for f in doc.get("files", [])):
            return False
        return not any(node.path in (op.path, op.dst) for op in self.pending_ops(oaio_id))

    def _rename_object(self, src: Node, dst_parent: Node, dst_name: str, new: str) -> None:
        if dst_parent.kind != "root":
            raise CrossDevice("object folders stay at the root")
        view = src.view
        assert view is not None
        if not view.writable:
            raise Forbidden(f"renaming {self.ns.name_of(view.oaio_id)!r} changes its _name (needs U, D or C)")
        if dst_name in self.ns.root_names():
            raise NotEmpty(f"{new} exists")
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

    # ------------------------------------------------------------------ xattrs
    def listxattr(self, path: str) -> list[str]:
        node = self.ns.resolve(path)
        if node.kind == "root":
            return [XATTR_MOUNT_STATUS]
        if node.kind in ("file",):
            return list(FILE_XATTRS)
        if node.kind in ("object", "dir"):
            return [XATTR_PIN]
        return [XATTR_VERSION]

    def getxattr(self, path: str, name: str) -> bytes:
        node = self.ns.resolve(path)
        if node.kind == "root" and name == XATTR_MOUNT_STATUS:
            return json.dumps(self.status(), indent=2, default=str).encode("utf-8")
        view = node.view
        if view is None:
            raise NoAttribute(f"{path}: no attribute {name}")
        if name == XATTR_PIN and node.kind in ("object", "dir", "file"):
            return b"1" if self.cache.is_pinned((view.oaio_id, node.path)) else b"0"
        if node.kind == "values" and name == XATTR_VERSION:
            return str(view.version).encode()
        if node.kind != "file" or name not in FILE_XATTRS:
            raise NoAttribute(f"{path}: no attribute {name}")
        entry = node.entry
        assert entry is not None
        if name == XATTR_SHA256:
            return (entry.sha256 or self._local_sha256((view.oaio_id, entry.path)) or "").encode()
        if name == XATTR_VERSION:
            return str(entry.version).encode()
        return self.file_status(view.oaio_id, entry.path, entry.version, entry.mtime).encode()

    def _local_sha256(self, key: ItemKey) -> str | None:
        rec = self.cache.peek(key)
        return rec.get("sha256") if rec else None

    def file_status(self, oaio_id: str, path: str, version: int, mtime: float = 0.0) -> str:
        """cached | remote | dirty | uploading | conflict | error.

        "conflict": this file's local change became a conflict copy and the file was not
        written again since (a newer server mtime ends it)."""
        ops = [op for op in self.journal.pending(oaio_id) if path in (op.path, op.dst)]
        states = {op.state for op in ops}
        rec = self.cache.peek((oaio_id, path))
        if rec and rec["writers"]:
            return "dirty"
        if "failed" in states:
            return "error"
        if states & {"pending", "running"}:
            return "uploading"
        if rec and rec["dirty"]:
            return "dirty"
        if self._in_conflict(oaio_id, path, mtime):
            return "conflict"
        if rec and rec["version"] == version and sum(e - s for s, e in rec["ranges"]) >= rec["size"]:
            return "cached"
        return "remote"

    def _in_conflict(self, oaio_id: str, path: str, mtime: float) -> bool:
        conflicts = self.journal.status().get("conflicts", [])
        return any(c.get("oaio_id") == oaio_id and path in (c.get("path"), c.get("conflict_path"))
                   and float(c.get("time") or 0) >= mtime for c in conflicts)

    def setxattr(self, path: str, name: str, value: bytes) -> None:
        if name != XATTR_PIN:
            raise NotSupported(f"{name} cannot be set (only {XATTR_PIN})")
        node = self.ns.resolve(path)
        if node.kind in ("root", "values"):
            raise NotPermitted(f"{path} cannot be pinned (pin an object, folder or file)")
        if value.strip() in (b"0", b"", b"false", b"no"):
            self.cache.unpin(node.oaio_id, node.path)
            return
        self.cache.pin(node.oaio_id, node.path)
        self.fetch_tree(node)

    def removexattr(self, path: str, name: str) -> None:
        if name != XATTR_PIN:
            raise NoAttribute(f"{path}: no attribute {name}")
        node = self.ns.resolve(path)
        if node.view is not None:
            self.cache.unpin(node.oaio_id, node.path)

    def fetch_tree(self, node: Node) -> None:
        """Bring every file at or under ``node`` into the cache (for pins)."""
        view = node.view
        assert view is not None
        prefix = node.path
        files = [e for p, e in view.entries.items() if e.kind == "file" and not e.local
                 and (not prefix or p == prefix or p.startswith(prefix + "/"))]
        for entry in files:
            item = self.cache.open((view.oaio_id, entry.path), version=entry.version, sha256=entry.sha256,
                                   size=entry.size)
            try:
                if not item.dirty:
                    self.fetcher.fill(item)
            finally:
                self.cache.close(item)

    def utimens(self, path: str, times: tuple[float, float] | None) -> None:
        """Accepted and ignored: mtimes are the server's (set when a file is committed)."""
        self.ns.resolve(path)

    def chmod(self, path: str, mode: int) -> None:
        """Accepted and ignored: modes show access rights, they cannot be changed here."""
        self.ns.resolve(path)

    # ------------------------------------------------------------------ status / callbacks
    def status(self) -> dict[str, Any]:
        doc = dict(self.journal.status())
        doc["cache"] = self.cache.stats()
        doc["objects"] = len(self.ns.object_ids())
        doc.update(self.extra_status())
        doc["online"] = bool(doc.get("online", True)) and bool(doc.get("feed_online", True))
        return doc

    def on_applied(self, op: Op, doc: dict[str, Any] | None) -> None:
        """Journal callback: ``op`` is on the server; ``doc`` is the object after it."""
        self._mark_applied(op)
        if doc is not None:
            self.ns.put_doc(doc)
        elif op.kind == "delete_object":
            self.ns.drop(op.oaio_id)
        if op.kind == "put_file":
            with self._submit_lock:
                submitted = self._submitted.pop(op.id, None)
            version = op.result_version
            if version is None and doc is not None:
                version = next((f["version"] for f in doc.get("files", []) if f["path"] == op.path), None)
            if submitted is not None and version is not None:
                key, gen = submitted
                self.cache.mark_clean_key(key, version, op.sha256, gen)
        with self._submit_lock:
            for key in [k for k, last in self._last_op.items() if last.id == op.id]:
                del self._last_op[key]                  # fsync after this has nothing to wait for
        self.ns.local_changed(op.oaio_id)

    def _mark_applied(self, op: Op) -> None:
        with self._submit_lock:
            if len(self._applied) > 10_000:
                still = {o.id for o in self.journal.pending(None)}
                self._applied = {i for i in self._applied if i in still}
            self._applied = self._applied | {op.id}      # replaced, never mutated: readers need no lock

    def on_conflict(self, op: Op, conflict_copy: str) -> None:
        log.warning("%s/%s changed elsewhere too; the local version was saved as %s",
                    op.oaio_id, op.path or protocol.VALUES_FILE, conflict_copy)
        if op.kind == "put_file":
            with self._submit_lock:
                submitted = self._submitted.pop(op.id, None)
            if submitted is not None:
                self.cache.drop_if_unchanged(*submitted)
        self.ns.local_changed(op.oaio_id)

    def on_failed(self, op: Op, err: OaioError) -> None:
        log.warning("%s of %s/%s failed permanently (%s); local bytes kept", op.kind, op.oaio_id,
                    op.path, err.message)
        self.ns.local_changed(op.oaio_id)

    # ------------------------------------------------------------------ helpers
    def _parent_of(self, path: str) -> tuple[Node, str]:
        parent_path, _, name = path.rstrip("/").rpartition("/")
        parent = self.ns.resolve(parent_path or "/")
        if not parent.is_dir:
            raise NotADirectory(f"{parent_path} is not a folder")
        if not name or len(name.encode("utf-8")) > protocol.MAX_NAME_BYTES:
            raise InvalidValue(f"bad file name {name[:50]!r}")
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


def parse_values(text: bytes) -> dict[str, Any]:
    """values.json text -> values, or ``InvalidValue`` saying why not."""
    if len(text) > protocol.MAX_VALUES_BYTES:
        raise TooLarge(f"values.json is larger than {protocol.MAX_VALUES_BYTES} bytes")
    try:
        values = json.loads(text.decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidValue(f"values.json is not valid JSON: {exc}") from None
    return protocol.validate_values(values)
