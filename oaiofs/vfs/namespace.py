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
from .errors import NotADirectory
from .nodes import Entry, Node, ObjectView, base_dir_name, collision_suffix
from .overlay import build_view

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

    def set_pending_source(self, pending_ops: PendingOps) -> None:
        """Attach the journal's ``pending`` once it exists; rebuilds the overlay."""
        with self._lock:
            self._pending_ops = pending_ops
            self._local_ids = {op.oaio_id for op in pending_ops(None)}
            self._changed_locked(None)

    # --- updates from the server ---
    def load(self, docs: Iterable[Mapping[str, Any]]) -> None:
        """Replace everything with a full listing."""
        with self._lock:
            self._docs = {d["oaio_id"]: dict(d) for d in docs if not d.get("deleted")}
            self._changed_locked(None)

    def put_doc(self, doc: Mapping[str, Any]) -> None:
        """A fresh ObjectDoc from the server (deleted docs remove the object)."""
        with self._lock:
            oaio_id = doc["oaio_id"]
            old = self._docs.get(oaio_id)
            if old is not None and old.get("version", 0) > doc.get("version", 0) and not doc.get("deleted"):
                return                                   # an older answer overtaken by a newer one
            if doc.get("deleted"):
                self._docs.pop(oaio_id, None)
            else:
                self._docs[oaio_id] = dict(doc)
            self._changed_locked(oaio_id)

    def drop(self, oaio_id: str) -> None:
        """The object is gone or no longer visible."""
        with self._lock:
            self._docs.pop(oaio_id, None)
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

    def set_open_file(self, oaio_id: str, path: str, size: int, mtime: float) -> None:
        """Show a file being written (created, grown, truncated) before it is committed."""
        with self._lock:
            files = self._open_files.setdefault(oaio_id, {})
            entry = files.get(path)
            if entry is not None:           # the view shares this Entry: update it in place
                entry.size, entry.mtime, entry.mtime_ns = size, mtime, 0
                return
            files[path] = Entry(path, "file", size, None, 0, mtime, local=True)
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
            self._changed_locked(oaio_id, names=False)
            return True

    def open_file(self, oaio_id: str, path: str) -> Entry | None:
        """The entry of a file open with unsaved writes (shared: read, do not keep)."""
        with self._lock:
            return self._open_files.get(oaio_id, {}).get(path)

    def clear_open_file(self, oaio_id: str, path: str) -> None:
        with self._lock:
            files = self._open_files.get(oaio_id, {})
            if files.pop(path, None) is not None:
                if not files:
                    self._open_files.pop(oaio_id, None)
                self._changed_locked(oaio_id, names=False)

    def move_open_files(self, oaio_id: str, src: str, dst: str) -> None:
        """A rename of an open file (or its folder) keeps its pending size visible."""
        with self._lock:
            files = self._open_files.get(oaio_id, {})
            for path in [p for p in files if p == src or p.startswith(src + "/")]:
                entry = files.pop(path)
                entry.path = dst + path[len(src):]
                files[entry.path] = entry
            self._changed_locked(oaio_id, names=False)

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
