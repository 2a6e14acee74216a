"""POSIX metadata on the drive: chmod, utimens, symlink, readlink (FUSE-free).

Permission bits and mtimes are stored on the server with each file. A change to
a file that is open with unsaved writes rides along with its upload (the
``put_file`` op carries ``mode``/``mtime_ns``); any other change is a small
``set_meta`` journal op: durable offline, and no file bytes are sent again.
Symbolic links are ``symlink`` ops; their target is stored as given and the drive
never resolves it itself (the kernel follows links, inside or outside the mount,
as for any file system).

Only object contents carry metadata: the root, object folders and values.json
accept chmod/utimens and ignore them (their modes show access rights).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from .. import protocol
from ..errors import AlreadyExists, Forbidden, InvalidValue, NotFound
from .errors import IsALink, NameTooLong, NotALink, NotPermitted

from .nodes import Entry, Node, ObjectView
from .opstore import Op

log = logging.getLogger(__name__)

UTIME_NOW = (1 << 30) - 1        # fusepy with use_ns: tv_sec 0 + tv_nsec UTIME_NOW
UTIME_OMIT = (1 << 30) - 2


def apply_meta_op(view: ObjectView, op: Any, touch_parent: Callable[[ObjectView, Any], None]) -> None:
    """Replay a ``set_meta`` or ``symlink`` op on a view (idempotent)."""
    if op.kind == "set_meta":
        entry = view.entries.get(op.path)
        if entry is None:
            return
        if op.mode is not None and entry.kind != "link":
            entry.mode = op.mode
        if op.mtime_ns is not None:
            entry.mtime, entry.mtime_ns = op.mtime_ns / 1e9, op.mtime_ns
            view.touched.pop(op.path, None)      # a folder's time set by hand: no op's touch shows
        return
    old = view.entries.get(op.path)
    if old is not None and old.kind == "dir":
        return                                   # the server refuses it too
    if old is None:
        touch_parent(view, op)
    mtime_ns = op.mtime_ns or round((op.mtime or time.time()) * 1e9)
    view.entries[op.path] = Entry(op.path, "link", len((op.target or "").encode("utf-8")), None,
                                  old.version if old is not None else 0, mtime_ns / 1e9, local=True,
                                  mode=protocol.LINK_MODE, mtime_ns=mtime_ns, target=op.target)


def resolve_times(times: tuple[int, int] | None) -> int | None:
    """fusepy ``times`` (ns, ``use_ns``) -> the new mtime in ns, or None when it is to stay (UTIME_OMIT)."""
    if times is None:
        return time.time_ns()
    mtime = int(times[1])
    if mtime == UTIME_OMIT:
        return None
    if mtime == UTIME_NOW:
        return time.time_ns()
    return mtime


class MetadataOps:
    """chmod / utimens / symlink / readlink over the namespace and the journal (via ``submit``)."""

    def __init__(self, namespace: Any, submit: Callable[[Op], Op], submit_meta: Callable[[Op], Op | None],
                 inner_path: Callable[[Node, str], str], parent_of: Callable[[str], tuple[Node, str]]) -> None:
        self.ns = namespace
        self._submit = submit
        self._submit_meta = submit_meta
        self._inner_path = inner_path
        self._parent_of = parent_of

    def chmod(self, path: str, mode: int) -> None:
        node = self.ns.resolve(path)
        if node.kind in ("root", "object", "values"):
            return                               # modes there show access rights
        self._need_update(node, path, chmod=True)
        self._change(node, mode=protocol.validate_mode(mode & 0o7777), mtime_ns=None)

    def utimens(self, path: str, times: tuple[int, int] | None) -> None:
        node = self.ns.resolve(path)
        if node.kind in ("root", "object", "values"):
            return                               # their times are the server's
        self._need_update(node, path, chmod=times is not None)
        mtime_ns = resolve_times(times)
        if mtime_ns is not None:
            self._change(node, mode=None, mtime_ns=mtime_ns)

    def symlink(self, target: str, path: str) -> None:
        """``ln -s target path``."""
        parent, name = self._parent_of(path)
        if parent.kind == "root":
            raise NotPermitted(f"{path}: only folders (objects) live at the root")
        self._need_update(parent, path)
        inner = self._inner_path(parent, name)
        if inner == protocol.VALUES_FILE:
            raise NotPermitted(f"{path}: values.json is the object's values")
        if len(target.encode("utf-8", "surrogateescape")) > protocol.MAX_LINK_TARGET_BYTES:
            raise NameTooLong(f"link target is longer than {protocol.MAX_LINK_TARGET_BYTES} bytes")
        try:
            protocol.validate_link_target(target)
        except (InvalidValue, UnicodeEncodeError):
            raise InvalidValue(f"{path}: the link target is not valid UTF-8") from None
        try:
            self.ns.resolve(path)
        except NotFound:
            pass
        else:
            raise AlreadyExists(f"{path} exists")
        assert parent.view is not None
        now = time.time_ns()
        self._submit(Op("symlink", parent.view.oaio_id, inner, target=target, mtime=now / 1e9, mtime_ns=now))

    def readlink(self, path: str) -> str:
        node = self.ns.resolve(path)
        if node.kind != "link" or node.entry is None or node.entry.target is None:
            raise NotALink(f"{path} is not a symbolic link")
        return str(node.entry.target)

    @staticmethod
    def refuse_link(node: Node, path: str) -> None:
        """Guard for operations that would have to follow a link themselves."""
        if node.kind == "link":
            raise IsALink(f"{path} is a symbolic link")

    # --- helpers ---
    def _change(self, node: Node, *, mode: int | None, mtime_ns: int | None) -> None:
        view, entry = node.view, node.entry
        assert view is not None and entry is not None
        op = Op("set_meta", view.oaio_id, entry.path, mode=mode, mtime_ns=mtime_ns,
                mtime=(mtime_ns / 1e9) if mtime_ns is not None else None)
        if node.kind == "file":
            self._submit_meta(op)                # with the upload of an open dirty file, or queued
        else:
            self._submit(op)

    @staticmethod
    def _need_update(node: Node, path: str, chmod: bool = False) -> None:
        view = node.view
        if view is None or not view.writable:
            right = view.access_right if view else "-"
            cls = NotPermitted if chmod else Forbidden
            raise cls(f"{path}: read-only (access right {right!r})")
