"""Row-level access to an object's file entries: what one file operation needs, never the whole list.

:class:`EntryIndex` looks like the ``{path: FileEntry}`` dict the object service used
to build from ``obj.files`` (``get``, ``in``, ``[]``, ``del``, ``pop``), but it loads
entries one by one through the ``(object_id, path_hash)`` unique index and caches what
it saw; :meth:`EntryIndex.prefetch` reads several (e.g. every parent of a path) in one
query and :meth:`EntryIndex.subtree` reads a folder and everything under it by path
prefix. New entries are added to the session with their ``object_id`` (not appended to
``obj.files``, which would load the whole collection); :func:`finish` expires the
collection after a change so a later reader of ``obj.files`` sees the database.
So the cost of a commit, delete, move or metadata change does not grow with the object.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from .models import FileEntry, OaiObject

_MISSING = object()


def path_hash(path: str) -> str:
    """The ``FileEntry.path_hash`` of ``path``."""
    return hashlib.sha256(path.encode("utf-8")).hexdigest()


class EntryIndex:
    """The entries of one object, loaded on demand (one session, one transaction)."""

    def __init__(self, db: Session, obj: OaiObject) -> None:
        self.db, self.obj = db, obj
        self._seen: dict[str, FileEntry | None] = {}

    def _query(self, paths: list[str]) -> None:
        by_hash = {path_hash(p): p for p in paths}
        for entry in self.db.scalars(select(FileEntry).where(FileEntry.object_id == self.obj.id,
                                                             FileEntry.path_hash.in_(list(by_hash)))):
            self._seen[entry.path] = entry
        for path in paths:
            self._seen.setdefault(path, None)

    def prefetch(self, paths: Iterable[str]) -> None:
        """Load the entries of ``paths`` not seen yet in one query."""
        todo = [p for p in dict.fromkeys(paths) if p not in self._seen]
        if todo:
            self._query(todo)

    def get(self, path: str, default: FileEntry | None = None) -> FileEntry | None:
        if path not in self._seen:
            self._query([path])
        entry = self._seen[path]
        return default if entry is None else entry

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.get(path) is not None

    def __getitem__(self, path: str) -> FileEntry:
        entry = self.get(path)
        if entry is None:
            raise KeyError(path)
        return entry

    def __setitem__(self, path: str, entry: FileEntry) -> None:
        self._seen[path] = entry

    def __delitem__(self, path: str) -> None:
        self._seen[path] = None

    def pop(self, path: str, default: FileEntry | None = None) -> FileEntry | None:
        entry = self.get(path)
        self._seen[path] = None
        return default if entry is None else entry

    def subtree(self, path: str) -> list[FileEntry]:
        """The entry at ``path`` and every entry below it (one query by path prefix)."""
        prefix = path + "/"
        rows = self.db.scalars(select(FileEntry).where(
            FileEntry.object_id == self.obj.id,
            or_(FileEntry.path_hash == path_hash(path),
                func.substr(FileEntry.path, 1, len(prefix)) == prefix)))
        found = [e for e in rows if e.path == path or e.path.startswith(prefix)]   # exact, whatever the collation
        for entry in found:
            self._seen[entry.path] = entry
        return sorted(found, key=lambda e: e.path)

    def has_below(self, path: str) -> bool:
        """True if anything lies below the folder ``path``."""
        prefix = path + "/"
        rows = self.db.scalars(select(FileEntry.path).where(
            FileEntry.object_id == self.obj.id, func.substr(FileEntry.path, 1, len(prefix)) == prefix).limit(8))
        return any(p.startswith(prefix) for p in rows)

    def add(self, entry: FileEntry) -> FileEntry:
        """A new entry of the object (added to the session, not to ``obj.files``)."""
        entry.object = self.obj       # a backref append: an unloaded ``obj.files`` stays unloaded
        self.db.add(entry)
        self._seen[entry.path] = entry
        return entry

    def remove(self, entry: FileEntry) -> None:
        """Delete ``entry`` (at its current path)."""
        self._seen[entry.path] = None
        self.db.delete(entry)


def index_of(obj: OaiObject) -> EntryIndex:
    """An :class:`EntryIndex` of ``obj`` in the session that loaded it."""
    db = Session.object_session(obj)
    if db is None:
        raise RuntimeError("the object is not attached to a session")
    return EntryIndex(db, obj)


def finish(db: Session, obj: OaiObject) -> None:
    """Flush the change and forget ``obj.files`` (reloaded from the database by its next reader)."""
    db.flush()
    if "files" in obj.__dict__:
        db.expire(obj, ["files"])
