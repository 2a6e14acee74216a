"""The drive's extended attributes (``user.oaio.*``): per-file state, pins and the mount status.

Read with ``getfattr -d``; ``user.oaio.pin`` is also settable (``oaiofs pin`` / ``unpin``).
``user.oaio.id`` (listed on object folders), ``user.oaio.info``, ``user.oaio.access``,
``user.oaio.control`` and ``user.oaio.result.<nonce>`` are the command line's channel to
the running mount (:mod:`.control`; set :attr:`Xattrs.control`).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from ..protocol import (XATTR_ACCESS, XATTR_CONTROL, XATTR_ID, XATTR_INFO, XATTR_MOUNT_STATUS, XATTR_PIN,
                        XATTR_RESULT_PREFIX, XATTR_SHA256, XATTR_STATUS, XATTR_VERSION)
from .cache import Cache, ItemKey
from .errors import NoAttribute, NotPermitted, NotSupported
from .fetcher import Fetcher
from .namespace import Namespace
from .nodes import Node

if TYPE_CHECKING:
    from .control import Control

FILE_XATTRS = (XATTR_STATUS, XATTR_SHA256, XATTR_VERSION, XATTR_PIN)


class Xattrs:
    """Answers the xattr calls of one mount."""

    def __init__(self, namespace: Namespace, cache: Cache, fetcher: Fetcher,
                 pending_ops: Callable[[str | None], list[Any]], journal_status: Callable[[], dict[str, Any]],
                 mount_status: Callable[[], dict[str, Any]]) -> None:
        self.ns = namespace
        self.cache = cache
        self.fetcher = fetcher
        self.pending_ops = pending_ops
        self.journal_status = journal_status
        self.mount_status = mount_status
        self.control: Control | None = None      # a .control.Control, set by the Drive (None: no control channel)

    def listxattr(self, path: str) -> list[str]:
        node = self.ns.resolve(path)
        if node.kind == "root":
            return [XATTR_MOUNT_STATUS]
        if node.kind in ("file",):
            return list(FILE_XATTRS)
        if node.kind == "object":
            return [XATTR_PIN, XATTR_ID]
        if node.kind == "dir":
            return [XATTR_PIN]
        return [XATTR_VERSION]

    def getxattr(self, path: str, name: str) -> bytes:
        node = self.ns.resolve(path)
        if node.kind == "root" and name == XATTR_MOUNT_STATUS:
            return json.dumps(self.mount_status(), indent=2, default=str).encode("utf-8")
        if self.control is not None:
            if name == XATTR_ID:
                return self.control.object_id(node)
            if name == XATTR_INFO:
                return self.control.info(node)
            if name == XATTR_ACCESS:
                return self.control.access(node)
            if name.startswith(XATTR_RESULT_PREFIX):
                return self.control.result(name[len(XATTR_RESULT_PREFIX):])
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
        ops = [op for op in self.pending_ops(oaio_id) if path in (op.path, op.dst)]
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
        conflicts = self.journal_status().get("conflicts", [])
        return any(c.get("oaio_id") == oaio_id and path in (c.get("path"), c.get("conflict_path"))
                   and float(c.get("time") or 0) >= mtime for c in conflicts)

    def setxattr(self, path: str, name: str, value: bytes) -> None:
        if name == XATTR_CONTROL and self.control is not None:
            self.control.request(self.ns.resolve(path), value)
            return
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
