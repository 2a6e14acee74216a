"""Namespace: the mount's metadata, in memory — mount path -> node.

Holds the server's ObjectDocs (filled by one ``list_objects`` call, refreshed by
the change feed and by the journal's ``on_applied``), the local overlay (the
journal's pending ops plus files open with unsaved writes) and the root folder
names. Views are built lazily and cached (cachetools) until something about the
object changes.

Locking: one ``RLock`` (``_lock``) guards every field; it is never held while
calling the network. ``pending_ops`` (the journal) may be called with it held,
so the journal must never call back into the namespace while holding its own lock.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable, Mapping

import cachetools

from .. import protocol
from ..errors import NotFound
from .errors import NotADirectory, check_name_lengths
from .nodes import Entry, Node, ObjectView, base_dir_name, collision_suffix
from .overlay import build_view
from .view_patch import (DocFiles, add_open_file, commit_applied, files_by_path, replay_op, replay_put_file,
                         wrote_open_file)

log = logging.getLogger(__name__)

PendingOps = Callable[[str | None], list[Any]]
VIEW_CACHE_SIZE = 200_000


class Namespace:
    """Path resolution and listings over server docs + local changes."""

    def __init__(self, me: str, pending_ops: PendingOps | None = None) -> None:
        self.me = me
        self._pending_ops: PendingOps = pending_ops or (lambda oaio_id: [])
        self._lock = threading.RLock()
        self._docs: dict[str, dict[str, Any]] = {}
        self._open_files: dict[str, dict[str, Entry]] = {}     # oaio_id -> path -> entry being written
        self._local_ids: set[str] = set()                       # objects known only from pending ops
        self._views: cachetools.LRUCache[str, ObjectView | None] = cachetools.LRUCache(VIEW_CACHE_SIZE)
        self._names: dict[str, str] | None = None               # root folder name -> oaio_id
        self._name_of: dict[str, str] = {}
        self.generation = 0                                     # bumps on every change (for listeners)
        self._doc_seq = 0                                       # bumps when a doc is put or dropped
        self._doc_seq_of: dict[str, int] = {}                   # oaio_id -> _doc_seq of its last put/drop
        self._last_files: tuple[Any, DocFiles] | None = None    # (files list, by path) of the last answer

    def set_pending_source(self, pending_ops: PendingOps) -> None:
        """Attach the journal's ``pending`` once it exists; rebuilds the overlay."""
        with self._lock:
            self._pending_ops = pending_ops
            self._local_ids = {op.oaio_id for op in pending_ops(None)}
            self._changed_locked(None)

    # --- updates from the server ---
    def doc_mark(self) -> int:
        """A mark to pass to :meth:`load` for a listing requested after this call."""
        with self._lock:
            return self._doc_seq

    def load(self, docs: Iterable[Mapping[str, Any]], since: int | None = None) -> None:
        """Replace everything with a full listing.

        With ``since`` (a :meth:`doc_mark` taken before the listing was requested), what was
        learned about an object after the mark (``put_doc``, ``drop``: a journal answer or a feed
        event that overtook the listing) wins over the listing unless the listing is newer, so a
        re-list never takes back an object or folder this mount just created."""
        with self._lock:
            listed = {d["oaio_id"]: dict(d) for d in docs if not d.get("deleted")}
            if since is not None:
                for oaio_id, seq in self._doc_seq_of.items():
                    if seq <= since:
                        continue
                    known, fresh = self._docs.get(oaio_id), listed.get(oaio_id)
                    if known is None:
                        listed.pop(oaio_id, None)               # dropped after the listing was asked for
                    elif fresh is None or known.get("version", 0) > fresh.get("version", 0):
                        listed[oaio_id] = known
            self._docs = listed
            self._doc_seq_of.clear()                            # every later mark is past these
            self._changed_locked(None)

    def put_doc(self, doc: Mapping[str, Any], applied: Any = None) -> bool:
        """A fresh ObjectDoc from the server (deleted docs remove the object).

        ``applied``: the journal op (of this mount) the document is the answer to. True when the
        cached view could be patched (see :mod:`oaiofs.vfs.view_patch`) instead of rebuilt."""
        files = self._files_of(doc) if applied is not None else None     # O(files): not under the lock
        with self._lock:
            oaio_id = doc["oaio_id"]
            old = self._docs.get(oaio_id)
            if old is not None and old.get("version", 0) > doc.get("version", 0) and not doc.get("deleted"):
                return False                             # an older answer overtaken by a newer one
            if (applied is None and old is not None and not doc.get("deleted") and oaio_id in self._views
                    and _same_doc(old, doc)):
                return False          # the document the view was built from (a feed refetch of our commit)
            if doc.get("deleted"):
                self._docs.pop(oaio_id, None)
            else:
                self._docs[oaio_id] = dict(doc)
            self._doc_seq += 1
            self._doc_seq_of[oaio_id] = self._doc_seq
            view = self._views.get(oaio_id)
            if (applied is not None and old is not None and view is not None and not doc.get("deleted")
                    and commit_applied(view, old, doc, applied, self._open_files.get(oaio_id, {}),
                                       lambda: self._pending_ops(oaio_id), files)):
                self.generation += 1
                return True
            self._changed_locked(oaio_id)
            return False

    def _files_of(self, doc: Mapping[str, Any]) -> DocFiles:
        """``doc``'s files by path; the answers to one batch share one document: indexed once."""
        last = self._last_files
        if last is not None and last[0] is doc.get("files"):
            return last[1]
        files = files_by_path(doc)
        self._last_files = (doc.get("files"), files)
        return files

    def drop(self, oaio_id: str) -> None:
        """The object is gone or no longer visible."""
        with self._lock:
            self._docs.pop(oaio_id, None)
            self._doc_seq += 1
            self._doc_seq_of[oaio_id] = self._doc_seq
            self._changed_locked(oaio_id)

    def docs(self) -> list[dict[str, Any]]:
        """The server docs (for persisting the listing)."""
        with self._lock:
            return list(self._docs.values())

    def doc(self, oaio_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._docs.get(oaio_id)

    # --- updates from this mount ---
    def local_changed(self, oaio_id: str | None) -> None:
        """A journal op was submitted or finished: rebuild that object's view."""
        with self._lock:
            if oaio_id is not None:
                self._local_ids.add(oaio_id)
            self._changed_locked(oaio_id)

    def patch_submitted(self, op: Any) -> bool:
        """A ``set_meta``/``mkdir`` op was just submitted: patch the cached view in place (True) when
        it can be (see :func:`oaiofs.vfs.view_patch.replay_op`); else call :meth:`local_changed`."""
        with self._lock:
            view = self._views.get(op.oaio_id)
            if view is None or not replay_op(view, op, self._open_files.get(op.oaio_id, {})):
                return False
            self._local_ids.add(op.oaio_id)
            self.generation += 1
            return True

    def set_open_file(self, oaio_id: str, path: str, size: int, mtime: float) -> None:
        """Show a file being written (created, grown, truncated) before it is committed."""
        with self._lock:
            files = self._open_files.setdefault(oaio_id, {})
            entry = files.get(path)
            if entry is not None:           # the view shares this Entry: update it in place
                entry.size, entry.mtime, entry.mtime_ns = size, mtime, 0
                view = self._views.get(oaio_id)
                if view is not None:
                    wrote_open_file(view, entry)
                return
            files[path] = entry = Entry(path, "file", size, None, 0, mtime, local=True)
            view = self._views.get(oaio_id)
            if view is not None and add_open_file(view, entry):
                self.generation += 1            # patched in place: no O(files) rebuild (issue 16)
                return
            self._changed_locked(oaio_id, names=False)

    def update_open_file(self, oaio_id: str, path: str, *, mode: int | None = None,
                         mtime_ns: int | None = None) -> bool:
        """chmod/utimens of a file open with unsaved writes (they go with its upload); False if not open."""
        with self._lock:
            entry = self._open_files.get(oaio_id, {}).get(path)
            if entry is None:
                return False
            if mode is not None:
                entry.mode = mode
            if mtime_ns is not None:
                entry.mtime, entry.mtime_ns = mtime_ns / 1e9, mtime_ns
            view = self._views.get(oaio_id)
            if mtime_ns is None and view is not None and view.entries.get(path) is entry:
                self.generation += 1            # the view shows this very entry: nothing to rebuild
                return True
            self._changed_locked(oaio_id, names=False)
            return True

    def open_file(self, oaio_id: str, path: str) -> Entry | None:
        """The entry of a file open with unsaved writes (shared: read, do not keep)."""
        with self._lock:
            return self._open_files.get(oaio_id, {}).get(path)

    def clear_open_file(self, oaio_id: str, path: str, submitted: Any = None) -> bool:
        """The file is no longer open with unsaved writes. With ``submitted`` (the ``put_file`` op
        that took its bytes, already in the journal) the cached view is patched with that op when
        it can be (True: then the caller need not call :meth:`local_changed`)."""
        with self._lock:
            files = self._open_files.get(oaio_id, {})
            cleared = files.pop(path, None) is not None
            if cleared and not files:
                self._open_files.pop(oaio_id, None)
            if submitted is not None:
                view = self._views.get(oaio_id)
                if view is not None and replay_put_file(view, submitted, files):
                    self._local_ids.add(oaio_id)
                    self.generation += 1
                    return True
            if cleared:
                self._changed_locked(oaio_id, names=False)
            return False

    def move_open_files(self, oaio_id: str, src: str, dst: str) -> bool:
        """A rename of an open file (or its folder) keeps its pending size visible; True if one moved."""
        with self._lock:
            files = self._open_files.get(oaio_id, {})
            moving = [p for p in files if p == src or p.startswith(src + "/")]
            for path in moving:
                entry = files.pop(path)
                entry.path = dst + path[len(src):]
                files[entry.path] = entry
            if moving:                      # else the move op's replay already shows the rename
                self._changed_locked(oaio_id, names=False)
            return bool(moving)

    # --- queries ---
    def view(self, oaio_id: str) -> ObjectView | None:
        with self._lock:
            try:
                return self._views[oaio_id]
            except KeyError:
                pass
            view = build_view(self._docs.get(oaio_id), self._pending_ops(oaio_id),
                              self._open_files.get(oaio_id, {}), self.me)
            self._views[oaio_id] = view
            return view

    def root_names(self) -> dict[str, str]:
        """Root folder name -> oaio_id (stable collision suffixes)."""
        with self._lock:
            if self._names is None:
                self._names = self._compute_names_locked()
                self._name_of = {oid: name for name, oid in self._names.items()}
            return self._names

    def name_of(self, oaio_id: str) -> str | None:
        with self._lock:
            self.root_names()
            return self._name_of.get(oaio_id)

    def resolve(self, path: str) -> Node:
        """Mount path ("/", "/obj", "/obj/a/b.txt") -> Node; ``NotFound`` if absent."""
        if path in ("/", ""):
            return Node("root")
        parts = path.strip("/").split("/")
        with self._lock:
            oaio_id = self.root_names().get(parts[0])
            view = self.view(oaio_id) if oaio_id else None
            if view is None:
                check_name_lengths(path, protocol.MAX_NAME_BYTES)      # only on a miss: no cost on hits
                raise NotFound(f"no object folder {parts[0]!r}")
            if len(parts) == 1:
                return Node("object", view)
            inner = "/".join(parts[1:])
            if inner == protocol.VALUES_FILE:
                return Node("values", view)
            entry = view.entries.get(inner)
            if entry is None:
                parent = view.entries.get("/".join(parts[1:-1]))
                if parent is not None and parent.kind in ("file", "link"):
                    raise NotADirectory(f"{path}: a parent is a file")
                check_name_lengths(path, protocol.MAX_NAME_BYTES)
                raise NotFound(f"{path}: no such file")
            return Node(entry.kind, view, entry)

    def list_dir(self, node: Node) -> list[tuple[str, Node]]:
        """The entries of a folder node."""
        with self._lock:
            if node.kind == "root":
                out = []
                for name, oaio_id in self.root_names().items():
                    view = self.view(oaio_id)
                    if view is not None:
                        out.append((name, Node("object", view)))
                return out
            view = node.view
            assert view is not None
            children = view.children.get(node.path, {})
            out = [(name, Node(e.kind, view, e)) for name, e in children.items()]
            if node.kind == "object":
                out.insert(0, (protocol.VALUES_FILE, Node("values", view)))
            return out

    def object_ids(self) -> list[str]:
        with self._lock:
            return list(set(self._docs) | self._local_ids)

    # --- internals ---
    def _changed_locked(self, oaio_id: str | None, names: bool = True) -> None:
        if oaio_id is None:
            self._views.clear()
        else:
            self._views.pop(oaio_id, None)
        if names:
            self._names = None
        self.generation += 1

    def _compute_names_locked(self) -> dict[str, str]:
        wanted: dict[str, list[ObjectView]] = {}
        for oaio_id in set(self._docs) | self._local_ids:
            view = self.view(oaio_id)
            if view is not None:
                wanted.setdefault(base_dir_name(view), []).append(view)
        names: dict[str, str] = {}
        for base, views in wanted.items():
            # the oldest object keeps the plain name; the others get a suffix from their id
            views.sort(key=lambda v: (v.local, v.created, v.oaio_id))
            names[base] = views[0].oaio_id
            for view in views[1:]:
                names[base + collision_suffix(view.oaio_id)] = view.oaio_id
        return names


def _same_doc(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """True if ``new`` shows nothing ``old`` does not: same object version (files and values change
    only with it) and the same rights and owner (sharing changes do not bump the version)."""
    return all(old.get(key) == new.get(key) for key in ("version", "access_right", "owner", "values", "updated"))
