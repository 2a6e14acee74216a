"""Patch a cached :class:`ObjectView` in place for the drive's hot, simple changes (issue 16).

Rebuilding a view (:func:`oaiofs.vfs.overlay.build_view`) costs O(files in the object); doing
it for every file created made creating the n-th file O(n). The namespace calls these
functions instead of dropping its cached view when the change is one of:

- a new file opened for writing (an open-file overlay entry under a name not yet shown);
- a ``put_file`` op just submitted for a plain file (or a new name) whose folder exists;
- a ``set_meta`` (chmod/utimens) or ``mkdir`` op just submitted (``git clone`` makes one of each
  per file or folder), a ``move`` or ``delete_path`` of one file or link (git's lock files);
- the server's document right after one of these ops was applied (one commit later than the
  last one, or the document after a batch of this mount's files).

Each returns False when its preconditions do not hold; the caller then drops the view (it
is rebuilt from scratch on the next look-up). When they hold, the patched view equals
what a rebuild would give (same entries, children, sub-folder counts and folder mtimes).
Files open with unsaved writes are no reason to rebuild: build_view applies them after every
op (a new name being written moves its folder's mtime forward), so a patch that sets a folder's
mtime applies them again (``_retouch``). ``ObjectView.touched`` tells which op last set a
folder's mtime, so a commit knows whether the server's touch of that folder shows.
Pure functions on the view: no I/O, no locks (the namespace holds its lock).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping

from .metadata import apply_meta_op
from .nodes import Entry, ObjectView, iso_to_epoch
from .overlay import _touch_parent

PendingOps = Callable[[], Iterable[Any]]
DocFiles = Mapping[str, Mapping[str, Any]]          # path -> the server's FileDoc

__all__ = ["add_open_file", "commit_applied", "commit_mkdir", "commit_put_file", "files_by_path", "replay_op",
           "replay_put_file", "wrote_open_file"]


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
    _retouch(view, parent, open_files)
    return True


def replay_op(view: ObjectView, op: Any, open_files: Mapping[str, Entry]) -> bool:
    """Replay a just-submitted ``set_meta``, ``mkdir``, or a ``move``/``delete_path`` of one file or
    link (the newest op: last, as a rebuild replays it) on the view; False when a rebuild could
    differ (an open file's overlay involved, a folder's tree moved or removed)."""
    if op.kind in ("move", "delete_path"):
        return _replay_name_op(view, op, open_files)
    if op.kind == "set_meta":
        if op.path in view.shadowed or op.path in open_files:
            return False                  # a rebuild applies it under the open file's overlay
        apply_meta_op(view, op, _touch_parent)
        _retouch(view, op.path, open_files)
        return True
    if op.kind != "mkdir":
        return False
    if op.path in view.entries:
        return True                       # apply_op leaves an existing name alone
    found = _folder(view, op.path)
    if found is None:
        return False
    parent, name = found
    _touch_parent(view, op)
    entry = Entry(op.path, "dir", mtime=op.mtime or time.time(), local=True, mode=getattr(op, "mode", None))
    view.entries[op.path] = entry
    view.children[parent][name] = entry
    view.children.setdefault(op.path, {})
    view.subdirs[parent] = view.subdirs.get(parent, 0) + 1
    _retouch(view, parent, open_files)
    return True


def _replay_name_op(view: ObjectView, op: Any, open_files: Mapping[str, Entry]) -> bool:
    """apply_op's ``move``/``delete_path`` for a file or link, without its O(files) tree scans."""
    paths = (op.path, op.dst) if op.kind == "move" else (op.path,)
    if any(p in view.shadowed or p in open_files for p in paths):
        return False                      # an open file's overlay: a rebuild applies it after the op
    src = view.entries.get(op.path)
    if src is None:
        # a delete of a name the view does not show changes nothing; a move of one may (its tree)
        return op.kind == "delete_path" and op.path not in view.children
    if src.kind == "dir" or _folder(view, op.path) is None:
        return False
    src_parent, _, src_name = op.path.rpartition("/")
    if op.kind == "delete_path":
        _touch_parent(view, op)
        del view.entries[op.path]
        view.children[src_parent].pop(src_name, None)
        _retouch(view, src_parent, open_files)
        return True
    found = _folder(view, op.dst)
    old = view.entries.get(op.dst)
    if found is None or (old is not None and old.kind == "dir") or op.dst in view.children:
        return False
    dst_parent, dst_name = found
    _touch_parent(view, op)
    _touch_parent(view, op, op.dst)
    del view.entries[op.path]
    view.children[src_parent].pop(src_name, None)
    moved = Entry(op.dst, src.kind, src.size, src.sha256, src.version, src.mtime, local=True, mode=src.mode,
                  mtime_ns=src.mtime_ns, target=src.target)
    view.entries[op.dst] = moved
    view.children[dst_parent][dst_name] = moved
    _retouch(view, src_parent, open_files)
    _retouch(view, dst_parent, open_files)
    return True


def _touch_for_open_file(view: ObjectView, parent: str, entry: Entry) -> None:
    """build_view's rule: a new name being written moves its folder's mtime forward."""
    folder = view.entries.get(parent) if parent else None
    if folder is not None and folder.kind == "dir" and folder.time_ns < round(entry.mtime * 1e9):
        folder.mtime, folder.mtime_ns = entry.mtime, 0


def _retouch(view: ObjectView, parent: str, open_files: Mapping[str, Entry]) -> None:
    """After a patch set ``parent``'s mtime: build_view applies the open files after every op, so
    each new name being written in ``parent`` moves its mtime forward again."""
    for path, entry in open_files.items():
        if path.rpartition("/")[0] == parent and path in view.shadowed and view.shadowed[path] is None:
            _touch_for_open_file(view, parent, entry)


def files_by_path(doc: Mapping[str, Any]) -> DocFiles:
    """``doc``'s file entries by path (the namespace builds it outside its lock, once per document)."""
    return {f["path"]: f for f in doc.get("files", ())}


def _doc_entries(files: DocFiles, paths: set[str]) -> dict[str, Mapping[str, Any]]:
    """The server's entries of ``paths``."""
    return {path: files[path] for path in paths if path in files}


def _parents_are_folders(view: ObjectView, server: Mapping[str, Mapping[str, Any]], parents: set[str]) -> bool:
    """Each of ``parents`` (but the object's top) is a folder in the view and in the document."""
    for parent in parents - {""}:
        folder, new = view.entries.get(parent), server.get(parent)
        if folder is None or folder.kind != "dir" or new is None or new.get("kind") != "dir":
            return False
    return True


def _same_object(old_doc: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    return all(doc.get(key) == old_doc.get(key) for key in ("values", "access_right", "owner", "created"))


def _show_committed(view: ObjectView, op: Any, doc: Mapping[str, Any], server: Mapping[str, Mapping[str, Any]],
                    shown: dict[str, Entry | None], open_files: Mapping[str, Entry]) -> None:
    """Show the server's entries ``shown`` (path -> entry, None: gone), the server's touch of
    each folder this op was the last local touch of, and the document's version and time."""
    for path, entry in shown.items():
        parent, _, name = path.rpartition("/")
        if entry is None:
            view.entries.pop(path, None)
            view.children.get(parent, {}).pop(name, None)
        else:
            view.entries[path] = entry
            view.children[parent][name] = entry
    created = float(getattr(op, "created", 0) or 0)
    for parent in {p.rpartition("/")[0] for p in (op.path, op.dst or op.path)} - {""}:
        folder, new = view.entries.get(parent), server.get(parent)
        if folder is not None and new is not None and view.touched.get(parent) == created:
            # the folder was last touched by this op (its local time): the server's touch replaces it
            folder.mtime, folder.mtime_ns = float(new.get("mtime") or 0), int(new.get("mtime_ns") or 0)
            del view.touched[parent]
            _retouch(view, parent, open_files)
    view.version = int(doc.get("version", 0))
    view.mtime = iso_to_epoch(doc.get("updated"))


def commit_applied(view: ObjectView, old_doc: Mapping[str, Any], doc: Mapping[str, Any], op: Any,
                   open_files: Mapping[str, Entry], pending: PendingOps = lambda: (),
                   files: DocFiles | None = None) -> bool:
    """The server's document right after this mount's ``op`` was applied: patch the view as a
    rebuild without the op would show it; False when it cannot be sure (then the caller rebuilds).
    ``pending``: the object's ops not yet applied (asked only after a batch); ``files``:
    :func:`files_by_path` of ``doc`` (O(files): made once, not under a lock, by the caller)."""
    files = files if files is not None else files_by_path(doc)
    if op.kind == "put_file":
        return commit_put_file(view, old_doc, doc, op, open_files, pending, files)
    if op.kind == "mkdir":
        return commit_mkdir(view, old_doc, doc, op, open_files, pending, files)
    if op.kind in ("move", "delete_path", "set_meta"):
        return _commit_name_or_meta(view, old_doc, doc, op, open_files, files)
    return False


def commit_put_file(view: ObjectView, old_doc: Mapping[str, Any], doc: Mapping[str, Any], op: Any,
                    open_files: Mapping[str, Entry], pending: PendingOps, files: DocFiles) -> bool:
    """The server's document after this mount's ``put_file`` ``op`` (exactly one change since
    ``old_doc``, the same document again, or the document after the op's whole batch): show the
    server's entry of the file, its folder's new mtime and the object's version, as a rebuild
    without the (now applied) op would."""
    if op.kind != "put_file" or op.path in open_files:
        return False
    old_version = int(old_doc.get("version", 0))
    if (int(doc.get("version", 0)) - old_version not in (0, 1)
            and not _only_batch_since(view, doc, old_version, op, pending)):
        return False                      # other changes in between: rebuild (0: the same document,
                                          # e.g. the answer to a batch, given for each of its files)
    if not _same_object(old_doc, doc):
        return False
    shown = view.entries.get(op.path)
    if shown is None:
        if not any(o.kind == "move" and o.path == op.path for o in pending()):
            return _commit_removed_since(view, doc, op, open_files, files)
        return False                      # moved on since: the moved entry carries the server's fields
    if shown.kind != "file" or not shown.local or shown.sha256 != op.sha256:
        return False                      # a later local change of the file shows: rebuild
    parent = op.path.rpartition("/")[0]
    server = _doc_entries(files, {op.path, parent})
    new_file = server.get(op.path)
    if not _parents_are_folders(view, server, {parent}) or new_file is None or new_file.get("sha256") != op.sha256:
        return False
    _show_committed(view, op, doc, server, {op.path: doc_entry(new_file)}, open_files)
    return True


def _commit_removed_since(view: ObjectView, doc: Mapping[str, Any], op: Any, open_files: Mapping[str, Entry],
                          files: DocFiles) -> bool:
    """The file of an applied ``put_file`` was deleted here since (a pending ``delete_path``: the
    view shows it gone, as a rebuild does): only the version and the folder's touch change."""
    parent = op.path.rpartition("/")[0]
    server = _doc_entries(files, {parent})
    if not _parents_are_folders(view, server, {parent}):
        return False
    _show_committed(view, op, doc, server, {}, open_files)
    return True


def _only_batch_since(view: ObjectView, doc: Mapping[str, Any], old_version: int, op: Any,
                      pending: PendingOps) -> bool:
    """True if every version between ``old_version`` and ``doc``'s is a file of ``op``'s batch (a
    batch commits one version per file, and the journal gives each of its ops its version before
    the first answer is applied): each is the version of this op or of a pending ``put_file`` of
    this mount at that path, and each folder made since is one the view shows as made here (a
    ``mkdir`` that went with the batch). A change of anyone else in between (a deletion too: it
    leaves no entry) makes the count differ."""
    version = int(doc.get("version", 0))
    if op.kind == "put_file" and not (op.result_version and old_version < op.result_version <= version):
        return False
    ours = {(o.path, o.result_version) for o in pending() if o.kind == "put_file" and o.result_version}
    if op.kind == "put_file":
        ours.add((op.path, op.result_version))
    files = 0
    for f in doc.get("files", ()):
        if int(f.get("version") or 0) <= old_version:
            continue
        if f.get("kind") == "dir":
            shown = view.entries.get(f["path"])
            if shown is None or shown.kind != "dir" or not shown.local:
                return False
        elif (f["path"], int(f["version"])) in ours:
            files += 1
        else:
            return False
    return files == version - old_version


def commit_mkdir(view: ObjectView, old_doc: Mapping[str, Any], doc: Mapping[str, Any], op: Any,
                 open_files: Mapping[str, Entry], pending: PendingOps, files: DocFiles) -> bool:
    """The server's document right after this mount's ``mkdir`` ``op`` (one commit later than
    ``old_doc``, the same document, or the one after the batch it went with): show the server's
    entry of the folder, its parent's new mtime and the object's version, as a rebuild without
    the (now applied) op would. False when a later op changed the folder's entry since (its
    mtime or mode): then the caller rebuilds."""
    old_version = int(old_doc.get("version", 0))
    if op.kind != "mkdir" or (int(doc.get("version", 0)) - old_version not in (0, 1)
                              and not _only_batch_since(view, doc, old_version, op, pending)):
        return False
    if not _same_object(old_doc, doc):
        return False
    shown = view.entries.get(op.path)
    parent = op.path.rpartition("/")[0]
    server = _doc_entries(files, {op.path, parent})
    new_dir = server.get(op.path)
    if (shown is not None and not shown.local and new_dir is not None and op.path not in view.shadowed
            and shown == doc_entry(new_dir) and _parents_are_folders(view, server, {parent})):
        _show_committed(view, op, doc, server, {}, open_files)   # the answer to a file of its batch
        return True                                             # already showed the server's folder
    if (shown is None or shown.kind != "dir" or not shown.local or shown.mtime_ns or shown.mode is not None
            or op.path in view.shadowed):
        return False                      # a later chmod/utimens of the folder shows: rebuild
    if not _parents_are_folders(view, server, {parent}) or new_dir is None or new_dir.get("kind") != "dir":
        return False
    entry = doc_entry(new_dir)
    if op.path in view.touched:
        entry.mtime, entry.mtime_ns = shown.mtime, 0    # a later op added a name inside: its touch stays
    _show_committed(view, op, doc, server, {op.path: entry}, open_files)
    if op.path not in view.touched:
        _retouch(view, op.path, open_files)            # the server's time, then the new names being written
    return True


def _commit_name_or_meta(view: ObjectView, old_doc: Mapping[str, Any], doc: Mapping[str, Any], op: Any,
                         open_files: Mapping[str, Entry], files: DocFiles) -> bool:
    """The server's document right after this mount's ``delete_path``, ``move`` (of a file or link)
    or ``set_meta`` ``op`` (one commit later than ``old_doc``): show what the server holds now
    where the view shows the op's effect as its own; False when a later op shows there instead."""
    if int(doc.get("version", 0)) - int(old_doc.get("version", 0)) != 1 or not _same_object(old_doc, doc):
        return False
    paths = (op.path, op.dst) if op.kind == "move" else (op.path,)
    if any(p in view.shadowed or p in open_files for p in paths):
        return False
    parents = {p.rpartition("/")[0] for p in paths}
    server = _doc_entries(files, {*paths, *parents})
    if not _parents_are_folders(view, server, parents if op.kind != "set_meta" else set()):
        return False
    shown = {p: view.entries.get(p) for p in paths}
    if op.kind == "delete_path":
        gone = shown[op.path]
        if op.path in server or (gone is not None and not gone.local):
            return False                  # still there, or the view shows the server's entry: rebuild
        _show_committed(view, op, doc, server, {}, open_files)
        return True
    target = op.dst if op.kind == "move" else op.path
    new, entry = server.get(target), shown[target]
    if (new is None or entry is None or entry.kind == "dir" and op.kind == "move"
            or entry.kind != new.get("kind", "file") or entry.sha256 != new.get("sha256")
            or entry.mode != new.get("mode") and entry.mode is not None
            or entry.time_ns != (int(new.get("mtime_ns") or 0) or round(float(new.get("mtime") or 0) * 1e9))):
        return False                      # a later upload or chmod/utimens of it shows: rebuild
    if op.kind == "move":
        source = shown[op.path]
        if op.path in server or (source is not None and not source.local) or not entry.local:
            return False                  # the server still has the source, or no later op of ours shows it
    elif entry.local:
        return False                      # a later upload of it shows: rebuild
    elif entry.kind == "dir" and op.path in view.touched:
        return False                      # a later op added a name inside: its touch shows
    _show_committed(view, op, doc, server, {target: doc_entry(new)}, open_files)
    if op.kind == "set_meta" and entry.kind == "dir":
        _retouch(view, op.path, open_files)
    return True


def doc_entry(f: Mapping[str, Any]) -> Entry:
    """An entry of the server's document as :func:`oaiofs.vfs.overlay.view_from_doc` makes it."""
    return Entry(f["path"], f.get("kind", "file"), int(f.get("size") or 0), f.get("sha256"),
                 int(f.get("version") or 0), float(f.get("mtime") or 0), mode=f.get("mode"),
                 mtime_ns=int(f.get("mtime_ns") or 0), target=f.get("target"))
