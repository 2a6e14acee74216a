"""Patch a cached :class:`ObjectView` in place for the drive's hot, simple changes (issue 16).

Rebuilding a view (:func:`oaiofs.vfs.overlay.build_view`) costs O(files in the object); doing
it for every file created made creating the n-th file O(n). The namespace calls these
functions instead of dropping its cached view when the change is one of:

- a new file opened for writing (an open-file overlay entry under a name not yet shown);
- a ``put_file`` op just submitted for a plain file (or a new name) whose folder exists;
- the server's document right after that op was applied (one commit later than the last one);
- a ``set_meta`` (chmod/utimens) or ``mkdir`` op just submitted (``git clone`` makes one of each
  per file or folder), and the server's document right after that ``mkdir`` was applied.

Each returns False when its preconditions do not hold; the caller then drops the view (it
is rebuilt from scratch on the next look-up). When they hold, the patched view equals
what a rebuild would give (same entries, children, sub-folder counts and folder mtimes).
Pure functions on the view: no I/O, no locks (the namespace holds its lock).
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from .metadata import apply_meta_op
from .nodes import Entry, ObjectView, iso_to_epoch
from .overlay import _touch_parent

__all__ = ["add_open_file", "commit_mkdir", "commit_put_file", "replay_meta_op", "replay_put_file",
           "wrote_open_file"]


def _folder(view: ObjectView, path: str) -> tuple[str, str] | None:
    """(parent, name) of ``path`` if its parent is a folder the view shows, else None."""
    parent, _, name = path.rpartition("/")
    if parent and (view.entries.get(parent) is None or view.entries[parent].kind != "dir"):
        return None
    if parent not in view.children:
        return None
    return parent, name


def add_open_file(view: ObjectView, entry: Entry) -> bool:
    """Show ``entry`` (a file just created and open for writing) under a name the view does not have."""
    if entry.path in view.entries or entry.kind != "file":
        return False
    found = _folder(view, entry.path)
    if found is None:
        return False
    parent, name = found
    _touch_for_open_file(view, parent, entry)
    view.entries[entry.path] = entry
    view.children[parent][name] = entry
    view.shadowed[entry.path] = None
    return True


def wrote_open_file(view: ObjectView, entry: Entry) -> None:
    """An open file's shared entry got a new size/mtime: a new name moves its folder's mtime on
    (build_view's rule, which a rebuild would apply with the new mtime)."""
    if entry.path in view.shadowed and view.shadowed[entry.path] is None and view.entries.get(entry.path) is entry:
        _touch_for_open_file(view, entry.path.rpartition("/")[0], entry)


def replay_put_file(view: ObjectView, op: Any, open_files: Mapping[str, Entry]) -> bool:
    """Replay a just-submitted ``put_file`` op on the view (the last op, so replaying it last is
    what a rebuild does); the file must not be open with unsaved writes any more (its overlay,
    still in the view, is taken out first: a rebuild would no longer apply it)."""
    if op.kind != "put_file" or op.path in open_files:
        return False
    if op.path in view.shadowed:
        old = view.shadowed[op.path]
    elif op.path in view.entries and view.entries[op.path].local and view.entries[op.path].sha256 is None:
        return False                      # an overlay entry of unknown origin: rebuild
    else:
        old = view.entries.get(op.path)
    if old is not None and old.kind != "file":
        return False                      # replacing a folder or link drops a tree: rebuild
    found = _folder(view, op.path)
    if found is None:
        return False
    parent, name = found
    if any(path.rpartition("/")[0] == parent for path in open_files):
        return False                      # a rebuild applies them after the op: their folder mtime rule
    if op.path in view.shadowed:          # the overlay goes: what it hid shows (until the op's entry)
        del view.shadowed[op.path]
        if old is None:
            view.entries.pop(op.path, None)
        else:
            view.entries[op.path] = old
    # apply_op's put_file, without its O(files) _drop_tree (an indexed view has nothing below a file)
    if old is None:
        _touch_parent(view, op)
    mode = getattr(op, "mode", None)
    if mode is None and old is not None:
        mode = old.mode
    entry = Entry(op.path, "file", op.size, op.sha256, old.version if old is not None else 0,
                  op.mtime or time.time(), local=True, mode=mode, mtime_ns=getattr(op, "mtime_ns", None) or 0)
    view.entries[op.path] = entry
    view.children[parent][name] = entry
    return True


def replay_meta_op(view: ObjectView, op: Any, open_files: Mapping[str, Entry]) -> bool:
    """Replay a just-submitted ``set_meta`` or ``mkdir`` op (the newest op: last, as a rebuild
    replays it) on the view; False when a rebuild could differ (an open file's overlay involved)."""
    if op.kind == "set_meta":
        if op.path in view.shadowed or op.path in open_files:
            return False                  # a rebuild applies it under the open file's overlay
        entry = view.entries.get(op.path)
        if entry is not None and entry.kind == "dir" and any(
                path.rpartition("/")[0] == op.path for path in open_files):
            return False                  # a rebuild moves the folder's mtime on again for them
        apply_meta_op(view, op, _touch_parent)
        return True
    if op.kind != "mkdir":
        return False
    if op.path in view.entries:
        return True                       # apply_op leaves an existing name alone
    found = _folder(view, op.path)
    if found is None:
        return False
    parent, name = found
    if any(path.rpartition("/")[0] == parent for path in open_files):
        return False                      # a rebuild applies their folder mtime rule after the op
    _touch_parent(view, op)
    entry = Entry(op.path, "dir", mtime=op.mtime or time.time(), local=True, mode=getattr(op, "mode", None))
    view.entries[op.path] = entry
    view.children[parent][name] = entry
    view.children.setdefault(op.path, {})
    view.subdirs[parent] = view.subdirs.get(parent, 0) + 1
    return True


def _touch_for_open_file(view: ObjectView, parent: str, entry: Entry) -> None:
    """build_view's rule: a new name being written moves its folder's mtime forward."""
    folder = view.entries.get(parent) if parent else None
    if folder is not None and folder.kind == "dir" and folder.time_ns < round(entry.mtime * 1e9):
        folder.mtime, folder.mtime_ns = entry.mtime, 0


def _server_entries(view: ObjectView, doc: Mapping[str, Any], path: str, parent: str
                    ) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None, Entry | None] | None:
    """The server's entries of ``path`` and of its ``parent`` folder in ``doc``, and the view's
    entry of that folder (both None at the object's top); None when the parent is not a folder
    on both sides (then the caller rebuilds)."""
    new_entry = new_parent = None
    for f in doc.get("files", ()):
        if f.get("path") == path:
            new_entry = f
        elif parent and f.get("path") == parent:
            new_parent = f
    if not parent:
        return new_entry, None, None
    folder = view.entries.get(parent)
    if folder is None or folder.kind != "dir" or new_parent is None or new_parent.get("kind") != "dir":
        return None
    return new_entry, new_parent, folder


def _show_committed(view: ObjectView, op: Any, doc: Mapping[str, Any], entry: Entry, folder: Entry | None,
                    new_parent: Mapping[str, Any] | None) -> None:
    """Show ``entry`` (the server's entry of ``op.path``), the server's touch of its folder when
    this op was the folder's last local touch, and the document's version and time."""
    parent, _, name = op.path.rpartition("/")
    view.entries[op.path] = entry
    view.children[parent][name] = entry
    if (folder is not None and new_parent is not None and folder.mtime == float(getattr(op, "created", 0) or 0)
            and not folder.mtime_ns):
        # the folder was last touched by this op (its local time): the server's touch replaces it
        folder.mtime, folder.mtime_ns = float(new_parent.get("mtime") or 0), int(new_parent.get("mtime_ns") or 0)
    view.version = int(doc.get("version", 0))
    view.mtime = iso_to_epoch(doc.get("updated"))


def commit_put_file(view: ObjectView, old_doc: Mapping[str, Any], doc: Mapping[str, Any], op: Any,
                    open_files: Mapping[str, Entry]) -> bool:
    """The server's document after this mount's ``put_file`` ``op`` (exactly one change since
    ``old_doc``, or the same document again): show the server's entry of the file, its folder's new mtime and the object's
    version, as a rebuild without the (now applied) op would."""
    if op.kind != "put_file" or op.path in open_files:
        return False
    if int(doc.get("version", 0)) - int(old_doc.get("version", 0)) not in (0, 1):
        return False                      # other changes in between: rebuild (0: the same document,
                                          # e.g. the answer to a batch, given for each of its files)
    for key in ("values", "access_right", "owner", "created"):
        if doc.get(key) != old_doc.get(key):
            return False
    shown = view.entries.get(op.path)
    if shown is None or shown.kind != "file" or not shown.local or shown.sha256 != op.sha256:
        return False                      # a later local change of the file shows: rebuild
    parent = op.path.rpartition("/")[0]
    if any(path.rpartition("/")[0] == parent for path in open_files):
        return False
    found = _server_entries(view, doc, op.path, parent)
    if found is None:
        return False
    new_file, new_parent, folder = found
    if new_file is None or new_file.get("sha256") != op.sha256:
        return False
    _show_committed(view, op, doc, doc_entry(new_file), folder, new_parent)
    return True


def commit_mkdir(view: ObjectView, old_doc: Mapping[str, Any], doc: Mapping[str, Any], op: Any,
                 open_files: Mapping[str, Entry]) -> bool:
    """The server's document right after this mount's ``mkdir`` ``op`` (one commit later than
    ``old_doc``): show the server's entry of the folder, its parent's new mtime and the object's
    version, as a rebuild without the (now applied) op would. False when a later op changed the
    folder's entry since (its mtime or mode): then the caller rebuilds."""
    if op.kind != "mkdir" or int(doc.get("version", 0)) - int(old_doc.get("version", 0)) != 1:
        return False
    for key in ("values", "access_right", "owner", "created"):
        if doc.get(key) != old_doc.get(key):
            return False
    shown = view.entries.get(op.path)
    if (shown is None or shown.kind != "dir" or not shown.local or shown.mtime_ns or shown.mode is not None
            or op.path in view.shadowed):
        return False                      # a later chmod/utimens of the folder shows: rebuild
    parent = op.path.rpartition("/")[0]
    if any(path.rpartition("/")[0] in (parent, op.path) for path in open_files):
        return False
    found = _server_entries(view, doc, op.path, parent)
    if found is None:
        return False
    new_dir, new_parent, folder = found
    if new_dir is None or new_dir.get("kind") != "dir":
        return False
    entry = doc_entry(new_dir)
    if shown.mtime != (op.mtime or 0):
        entry.mtime, entry.mtime_ns = shown.mtime, 0    # a later op added a name inside: its touch stays
    _show_committed(view, op, doc, entry, folder, new_parent)
    return True


def doc_entry(f: Mapping[str, Any]) -> Entry:
    """An entry of the server's document as :func:`oaiofs.vfs.overlay.view_from_doc` makes it."""
    return Entry(f["path"], f.get("kind", "file"), int(f.get("size") or 0), f.get("sha256"),
                 int(f.get("version") or 0), float(f.get("mtime") or 0), mode=f.get("mode"),
                 mtime_ns=int(f.get("mtime_ns") or 0), target=f.get("target"))
