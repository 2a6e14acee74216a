"""Build an :class:`ObjectView` from the server's ObjectDoc plus local changes not yet committed.

Local changes are the journal's pending ops (replayed in submit order; replay is
idempotent, so an op that the server already reflects changes nothing) and the
files currently open with unsaved writes. Pure functions: no I/O, no locks.
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Mapping

from .. import protocol
from .metadata import apply_meta_op
from .nodes import Entry, ObjectView, iso_to_epoch

# failed ops that removed or moved something are not replayed: the server's state shows
_NOT_REPLAYED_WHEN_FAILED = {"delete_path", "move", "delete_object"}


def view_from_doc(doc: Mapping[str, Any]) -> ObjectView:
    """The plain server view of an ObjectDoc."""
    view = ObjectView(oaio_id=doc["oaio_id"], owner=doc.get("owner", ""),
                      access_right=doc.get("access_right", "r"), values=dict(doc.get("values") or {}),
                      version=int(doc.get("version", 0)), created=doc.get("created") or "",
                      mtime=iso_to_epoch(doc.get("updated")))
    for f in doc.get("files", []):
        view.entries[f["path"]] = Entry(f["path"], f.get("kind", "file"), int(f.get("size") or 0),
                                        f.get("sha256"), int(f.get("version") or 0), float(f.get("mtime") or 0),
                                        mode=f.get("mode"), mtime_ns=int(f.get("mtime_ns") or 0),
                                        target=f.get("target"))
    return view


def build_view(doc: Mapping[str, Any] | None, ops: Iterable[Any], open_files: Mapping[str, Entry],
               me: str) -> ObjectView | None:
    """Server doc + pending ops + open dirty files -> the view, or None if the object is not there."""
    view = view_from_doc(doc) if doc is not None else None
    folders: set[str] | None = None       # every folder holding an entry (None: unknown, scan)
    for op in ops:
        if getattr(op, "state", "pending") == "done":
            continue
        if op.state == "failed" and op.kind in _NOT_REPLAYED_WHEN_FAILED:
            continue
        if view is not None and folders is None and op.kind == "put_file":
            folders = _folders_of(view.entries)
        view = apply_op(view, op, me, folders)
        if folders is not None:
            if op.kind in ("put_file", "mkdir", "symlink"):
                folders.update(protocol.parent_dirs(op.path))
            elif op.kind != "set_meta":
                folders = None            # moves and deletes: back to scanning (rare in bulk copies)
    if view is not None:
        for path, entry in open_files.items():
            old = view.entries.get(path)
            view.shadowed[path] = old           # what shows again once the file is handed over
            if entry.mode is None and old is not None and old.kind == "file":
                entry.mode = old.mode           # a file being rewritten keeps its bits
            if old is None:                     # created here, not yet released: a new name in its folder
                parent = view.entries.get(path.rpartition("/")[0])
                if parent is not None and parent.kind == "dir" and parent.time_ns < round(entry.mtime * 1e9):
                    parent.mtime, parent.mtime_ns = entry.mtime, 0
            view.entries[path] = entry
        view.index()
    return view


def apply_op(view: ObjectView | None, op: Any, me: str, folders: set[str] | None = None) -> ObjectView | None:
    """Replay one journal op on a view (idempotently). ``folders``: the folders holding an entry,
    if known (a put_file under a name no entry lives below then skips scanning for its subtree)."""
    now = op.mtime or time.time()
    if op.kind == "create_object":
        if view is None:
            view = ObjectView(op.oaio_id, me, "C", dict(op.values or {}), 0, "", now, local=True)
        return view
    if view is None:
        return None
    if op.kind == "delete_object":
        return None
    if op.kind == "put_values":
        view.values = dict(op.values or {})
        view._values_bytes = None
    elif op.kind == "put_file":
        old = view.entries.get(op.path)
        if old is None:
            _touch_parent(view, op)
        if folders is not None and op.path not in folders:
            view.entries.pop(op.path, None)       # nothing lives below it: no O(files) scan (issue 16)
        else:
            _drop_tree(view, op.path)
        mode = getattr(op, "mode", None)
        if mode is None and old is not None and old.kind == "file":
            mode = old.mode
        view.entries[op.path] = Entry(op.path, "file", op.size, op.sha256,
                                      old.version if old is not None else 0,
                                      now, local=True, mode=mode, mtime_ns=getattr(op, "mtime_ns", None) or 0)
    elif op.kind == "mkdir":
        if op.path not in view.entries:
            _touch_parent(view, op)
            view.entries[op.path] = Entry(op.path, "dir", mtime=now, local=True, mode=getattr(op, "mode", None))
    elif op.kind == "delete_path":
        if op.path in view.entries:
            _touch_parent(view, op)
        _drop_tree(view, op.path)
    elif op.kind == "move":
        if op.path in view.entries:
            _touch_parent(view, op)
            _touch_parent(view, op, op.dst)
        _move_tree(view, op.path, op.dst)
    elif op.kind in ("set_meta", "symlink"):
        apply_meta_op(view, op, _touch_parent)
    return view


def _touch_parent(view: ObjectView, op: Any, path: str | None = None) -> None:
    """A name was added or removed: the folder's mtime becomes the time of the op (as on the server)."""
    parent = (path if path is not None else op.path).rpartition("/")[0]
    entry = view.entries.get(parent) if parent else None
    if entry is not None and entry.kind == "dir":
        entry.mtime = float(getattr(op, "created", 0) or time.time())
        entry.mtime_ns = 0
        view.touched[parent] = entry.mtime


def _folders_of(entries: Mapping[str, Entry]) -> set[str]:
    """Every folder path some entry lives in (all levels)."""
    parents = {path.rpartition("/")[0] for path in entries}
    for parent in list(parents):
        while parent:
            parent = parent.rpartition("/")[0]
            if parent in parents:
                break
            parents.add(parent)
    return parents


def _drop_tree(view: ObjectView, path: str) -> None:
    prefix = path + "/"
    for key in [k for k in view.entries if k == path or k.startswith(prefix)]:
        del view.entries[key]


def _move_tree(view: ObjectView, src: str, dst: str) -> None:
    if src not in view.entries and not any(k.startswith(src + "/") for k in view.entries):
        return
    prefix = src + "/"
    moved = {k: e for k, e in view.entries.items() if k == src or k.startswith(prefix)}
    _drop_tree(view, dst)
    for key, entry in moved.items():
        del view.entries[key]
        new_path = dst + key[len(src):]
        view.entries[new_path] = Entry(new_path, entry.kind, entry.size, entry.sha256, entry.version,
                                       entry.mtime, local=True, mode=entry.mode, mtime_ns=entry.mtime_ns,
                                       target=entry.target)
