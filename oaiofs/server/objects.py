"""The object service: create, update values, delete (tombstone), files (commit, mkdir, delete, move), docs.

Every function runs inside the caller's transaction and expects the object to
have been loaded with :func:`oaiofs.server.access.load_object` (``for_update=True``
for changes), so the version check and the write are atomic across processes.

Versions: each change bumps ``OaiObject.version`` by one and sets a fresh
stamp. A file's ``version`` is the object version at which it was last
written (or moved/created, for folders). ``base_version`` on a values change is
compared with the object's version; on a file change with that file's version
(``0`` = "must not exist yet"). A stale base raises ``VersionConflict``.

Folders are materialised: every folder is a ``FileEntry`` with ``kind="dir"``,
created explicitly (``make_dir``) or implicitly for the parents of a committed
file or of a move target. So ``files`` always lists every folder, including
empty ones, and deleting a file leaves its folder in place (like a file system).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from typing import Any, Iterable

from sqlalchemy import and_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import protocol
from ..errors import AlreadyExists, Conflict, InvalidValue, NotEmpty, NotFound, TooLarge, VersionConflict
from . import changes, history
from . import db as dbmod
from . import trash
from .entry_index import EntryIndex, finish, index_of
from .entry_index import path_hash as path_hash
from .models import DIR as DIR, FILE as FILE, load_values as load_values    # re-exported
from .models import FileEntry, OaiObject, Subscription, User

log = logging.getLogger(__name__)


# --- documents ---


_FILE_FIELDS = ("path", "kind", "size", "sha256", "version", "stamp", "mtime", "mtime_ns", "mode", "target")
_OBJECT_FIELDS = ("oaio_id", "values_json", "version", "stamp", "created", "updated", "deleted", "app_id",
                  "device_id")


def file_doc(entry: Any) -> dict[str, Any]:
    """A ``FileDoc`` (see :mod:`oaiofs.protocol`) of a ``FileEntry`` or a row with the same fields."""
    doc = {name: getattr(entry, name) for name in _FILE_FIELDS}
    if doc["mtime"] is not None and not math.isfinite(doc["mtime"]):
        doc["mtime"] = 0.0                       # stored before mtimes were validated
    return doc


def _object_dict(obj: Any, owner: str, right: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "oaio_id": obj.oaio_id, "owner": owner, "values": load_values(obj.values_json),
        "version": obj.version, "stamp": obj.stamp, "created": dbmod.iso(obj.created), "updated": dbmod.iso(obj.updated),
        "deleted": dbmod.iso(obj.deleted), "access_right": right, "app_id": obj.app_id, "device_id": obj.device_id,
        "files": files,
    }


def object_doc(obj: OaiObject, right: str, *, limit: int | None = None, after: str | None = None) -> dict[str, Any]:
    """An ``ObjectDoc`` of ``obj`` as seen by a subscriber with ``right``.

    Files are read as plain rows (not ORM objects) unless ``obj.files`` is loaded already.
    ``limit`` pages the file list: at most ``limit`` files with paths after ``after`` (in the
    database's path order) and ``files_next``, the ``after`` of the next page (null: last page).
    """
    db = Session.object_session(obj)
    if limit is None and (db is None or "files" in obj.__dict__):
        files = [file_doc(f) for f in sorted(obj.files, key=lambda f: f.path)]
        return _object_dict(obj, obj.owner.username, right, files)
    assert db is not None
    query = select(*(getattr(FileEntry, f) for f in _FILE_FIELDS)).where(FileEntry.object_id == obj.id)
    if limit is None:
        files = sorted((file_doc(row) for row in db.execute(query)), key=lambda f: f["path"])
        return _object_dict(obj, obj.owner.username, right, files)
    if after is not None:
        query = query.where(FileEntry.path > after)
    files = [file_doc(row) for row in db.execute(query.order_by(FileEntry.path).limit(limit + 1))]
    doc = _object_dict(obj, obj.owner.username, right, files[:limit])
    doc["files_next"] = files[limit - 1]["path"] if len(files) > limit and limit > 0 else None
    return doc


def list_visible(db: Session, user: User) -> list[dict[str, Any]]:
    """Docs of every non-deleted object subscribed to ``user``, in two queries (no ORM objects).

    Thousands of objects are listed at once (the drive's ``ls -l``), so rows are
    read as plain tuples: one query for objects, one for all their files.
    """
    visible = and_(Subscription.object_id == OaiObject.id, Subscription.user_id == user.id)
    object_rows = db.execute(
        select(OaiObject.id, *(getattr(OaiObject, f) for f in _OBJECT_FIELDS), User.username,
               Subscription.access_right)
        .join(Subscription, visible).join(User, User.id == OaiObject.owner_id)
        .where(OaiObject.deleted.is_(None)).order_by(OaiObject.oaio_id)).all()
    files: dict[int, list[dict[str, Any]]] = {row.id: [] for row in object_rows}
    file_rows = db.execute(
        select(FileEntry.object_id, *(getattr(FileEntry, f) for f in _FILE_FIELDS))
        .join(OaiObject, OaiObject.id == FileEntry.object_id).join(Subscription, visible)
        .where(OaiObject.deleted.is_(None)).order_by(FileEntry.object_id, FileEntry.path))
    for row in file_rows:
        if row.object_id in files:     # an object created between the two queries is left for the feed
            files[row.object_id].append(file_doc(row))
    return [_object_dict(row, row.username, row.access_right, files[row.id]) for row in object_rows]


# --- helpers ---
def _values_json(values: dict[str, Any]) -> str:
    protocol.validate_values(values)
    text = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode("utf-8")) > protocol.MAX_VALUES_BYTES:
        raise TooLarge(f"values are larger than {protocol.MAX_VALUES_BYTES} bytes of JSON",
                       {"limit": protocol.MAX_VALUES_BYTES})
    return text


def _check_object_base(obj: OaiObject, base_version: int | None) -> None:
    if base_version is not None and base_version != obj.version:
        raise VersionConflict(f"object {obj.oaio_id!r} is at version {obj.version}, not {base_version}",
                              {"oaio_id": obj.oaio_id, "current_version": obj.version, "base_version": base_version})


def check_file_base(obj: OaiObject, path: str, entry: FileEntry | None, base_version: int | None) -> None:
    """Raise ``VersionConflict`` unless ``base_version`` is None or the version of ``entry`` (0: missing)."""
    if base_version is None:
        return
    current = entry.version if entry is not None else 0
    if base_version != current:
        raise VersionConflict(f"{path!r} of {obj.oaio_id!r} is at version {current}, not {base_version}",
                              {"oaio_id": obj.oaio_id, "path": path, "current_version": current,
                               "base_version": base_version})


_check_file_base = check_file_base    # earlier private name, still used by callers


def set_mtime(entry: FileEntry, mtime_ns: int) -> None:
    """Set both time columns of ``entry`` (``mtime`` float seconds, ``mtime_ns`` exact)."""
    entry.mtime_ns = int(mtime_ns)
    entry.mtime = mtime_ns / 1e9


def _new_dir(obj: OaiObject, path: str, now_ns: int) -> FileEntry:
    entry = FileEntry(path=path, kind=DIR, size=0, version=obj.version, stamp=obj.stamp,
                      mode=protocol.DEFAULT_DIR_MODE)
    set_mtime(entry, now_ns)
    return entry


def touch_parents(entries: dict[str, FileEntry] | EntryIndex, *paths: str) -> list[str]:
    """A name was added to or removed from the folders holding ``paths``: their mtime becomes now.

    Returns the folders touched (the object's top folder has no entry and is skipped).
    """
    now_ns = time.time_ns()
    touched = []
    for path in paths:
        parent = path.rpartition("/")[0]
        entry = entries.get(parent) if parent else None
        if entry is not None and entry.kind == DIR and parent not in touched:
            set_mtime(entry, now_ns)
            touched.append(parent)
    return touched


def _bump(obj: OaiObject) -> None:
    """Advance the object's version and stamp (stamps stay strictly increasing)."""
    now = dt.datetime.now(dt.timezone.utc)
    stamp = protocol.now_stamp(now)
    if stamp <= obj.stamp:
        stamp = protocol.now_stamp(protocol.stamp_to_datetime(obj.stamp) + dt.timedelta(microseconds=1))
    obj.version += 1
    obj.stamp = stamp
    obj.updated = now


def _entries(obj: OaiObject) -> dict[str, FileEntry]:
    """Every entry of ``obj`` by path (loads them all: file operations use :func:`index_of` instead)."""
    return {f.path: f for f in obj.files}


def _subtree(entries: dict[str, FileEntry] | EntryIndex, path: str) -> list[FileEntry]:
    if isinstance(entries, EntryIndex):
        return entries.subtree(path)
    prefix = path + "/"
    return [e for p, e in entries.items() if p == path or p.startswith(prefix)]


def _add(entries: dict[str, FileEntry] | EntryIndex, obj: OaiObject, entry: FileEntry) -> None:
    if isinstance(entries, EntryIndex):
        entries.add(entry)
    else:
        obj.files.append(entry)
        entries[entry.path] = entry


def _check_parents(obj: OaiObject, entries: dict[str, FileEntry] | EntryIndex, path: str) -> None:
    """Raise ``Conflict`` if a file stands where a parent folder of ``path`` must be."""
    if isinstance(entries, EntryIndex):
        entries.prefetch(protocol.parent_dirs(path))
    for parent in protocol.parent_dirs(path):
        entry = entries.get(parent)
        if entry is not None and entry.kind != DIR:
            raise Conflict(f"{parent!r} is a file, not a folder", {"oaio_id": obj.oaio_id, "path": parent})


def _ensure_parents(obj: OaiObject, entries: dict[str, FileEntry] | EntryIndex, path: str) -> list[str]:
    """Create the missing parent folders of ``path`` (checked with :func:`_check_parents` first)."""
    _check_parents(obj, entries, path)
    created = []
    for parent in protocol.parent_dirs(path):
        if parent not in entries:
            _add(entries, obj, _new_dir(obj, parent, time.time_ns()))
            created.append(parent)
    return created


def _updated(db: Session, obj: OaiObject, actor: User, *, values_changed: bool = False,
             changed: Iterable[str] = (), removed: Iterable[str] = ()) -> None:
    data: dict[str, Any] = {"values_changed": values_changed}
    if changed:
        data["changed_files"] = sorted(set(changed))
    if removed:
        data["removed_files"] = sorted(set(removed))
    changes.emit(db, obj, protocol.EVENT_UPDATED, data, actor=actor)


# --- objects ---
def create_object(db: Session, user: User, values: dict[str, Any], oaio_id: str | None = None, *,
                  app_id: str = "", device_id: str = "", stamp: str | None = None) -> OaiObject:
    """Register a new object owned by ``user`` (who gets right ``C``)."""
    values_text = _values_json(values)
    if stamp is not None and not protocol.is_stamp(stamp):
        raise InvalidValue("stamp must be 20 digits (UTC %Y%m%d%H%M%S%f) newer than the oldest sync stamp",
                           {"stamp": str(stamp)[:40]})
    stamp = stamp or protocol.now_stamp()
    if oaio_id is None:
        oaio_id = protocol.make_oaio_id(app_id, user.username, device_id, values, stamp)
    protocol.validate_oaio_id(oaio_id)
    dbmod.lock_for_write(db)
    if db.scalar(select(OaiObject.id).where(OaiObject.oaio_id == oaio_id)) is not None:
        raise AlreadyExists(f"object {oaio_id!r} already exists", {"oaio_id": oaio_id})
    now = dt.datetime.now(dt.timezone.utc)
    obj = OaiObject(oaio_id=oaio_id, owner=user, owner_id=user.id, values_json=values_text, version=1, stamp=stamp,
                    app_id=app_id, device_id=device_id, created=now, updated=now, files=[])
    db.add(obj)
    try:
        db.flush()
    except IntegrityError:   # another process created the same id concurrently (PostgreSQL)
        raise AlreadyExists(f"object {oaio_id!r} already exists", {"oaio_id": oaio_id}) from None
    db.add(Subscription(object_id=obj.id, user_id=user.id, access_right=protocol.CREATE_ACCESS_RIGHT))
    db.flush()
    history.record_values(db, user, obj)
    changes.emit(db, obj, protocol.EVENT_CREATED, {"access_right": protocol.CREATE_ACCESS_RIGHT}, actor=user)
    log.info("%s created object %r", user.username, oaio_id)
    return obj


def update_values(db: Session, user: User, obj: OaiObject, values: dict[str, Any], *, mode: str = "merge",
                  base_version: int | None = None) -> OaiObject:
    """Merge ``values`` into (top-level keys) or replace the object's values."""
    if mode not in ("merge", "replace"):
        raise InvalidValue("mode must be 'merge' or 'replace'", {"mode": str(mode)[:40]})
    protocol.validate_values(values)
    _check_object_base(obj, base_version)
    new_values = dict(load_values(obj.values_json), **values) if mode == "merge" else values
    obj.values_json = _values_json(new_values)
    _bump(obj)
    history.record_values(db, user, obj)
    _updated(db, obj, user, values_changed=True)
    return obj


def delete_object(db: Session, user: User, obj: OaiObject, base_version: int | None = None) -> OaiObject:
    """Tombstone the object: it stays in the database so the deletion reaches every subscriber."""
    _check_object_base(obj, base_version)
    _bump(obj)
    obj.deleted = obj.updated
    trash.keep_object(db, user, obj)      # restorable for the retention period (server/trash.py)
    changes.emit(db, obj, protocol.EVENT_DELETED, {}, actor=user)
    log.info("%s deleted object %r", user.username, obj.oaio_id)
    return obj


# --- files and folders ---
def commit_file(db: Session, user: User, obj: OaiObject, path: str, *, blob_key: str, size: int, sha256: str,
                mtime: float | None, base_version: int | None, mtime_ns: int | None = None,
                mode: int | None = None, entries: EntryIndex | None = None, flush: bool = True) -> FileEntry:
    """Point ``path`` at a stored blob (new file or new version), inside the caller's transaction.

    Checks ``base_version`` against the file's version, creates missing parent
    folders, bumps the object version and emits ``updated``. A link at ``path`` is
    replaced by the file. ``mode`` None keeps the file's bits (0o644 for a new file);
    ``mtime_ns`` wins over ``mtime``; neither means now. A batch passes its shared ``entries``
    (prefetched) and ``flush=False``, and flushes once after its last file.
    """
    path = protocol.normalize_file_path(path)
    entry, fresh, changed = place_entry(obj, path, base_version, entries)
    if fresh:
        entry.kind, entry.mode = FILE, protocol.DEFAULT_FILE_MODE
    elif entry.kind != FILE:                # a link replaced by a file
        entry.kind, entry.target, entry.mode = FILE, None, protocol.DEFAULT_FILE_MODE
    entry.blob_key, entry.size, entry.sha256 = blob_key, size, sha256
    entry.version, entry.stamp = obj.version, obj.stamp
    if mode is not None:
        entry.mode = protocol.validate_mode(mode)
    if mtime_ns is None:
        mtime_ns = round(float(mtime) * 1e9) if mtime is not None else time.time_ns()
    set_mtime(entry, mtime_ns)
    history.record_file(db, user, obj, entry)
    if flush:
        finish(db, obj)
    _updated(db, obj, user, changed=changed)
    return entry


def place_entry(obj: OaiObject, path: str, base_version: int | None,
                entries: EntryIndex | None = None) -> tuple[FileEntry, bool, list[str]]:
    """Where a file or link lands (``path`` normalised): checks the base version and the parents,
    bumps the object version and makes missing parent folders. Returns the entry at ``path``
    (appended if new), whether it is new, and every path the change touched (for the event)."""
    entries = index_of(obj) if entries is None else entries
    entries.prefetch([path, *protocol.parent_dirs(path)])
    entry = entries.get(path)
    if entry is not None and entry.kind == DIR:
        raise Conflict(f"{path!r} is a folder", {"oaio_id": obj.oaio_id, "path": path})
    check_file_base(obj, path, entry, base_version)
    _check_parents(obj, entries, path)
    _bump(obj)
    created = _ensure_parents(obj, entries, path)
    touched: list[str] = []
    fresh = entry is None
    if entry is None:
        entry = FileEntry(path=path)
        _add(entries, obj, entry)
        touched = touch_parents(entries, path)
    return entry, fresh, [path, *created, *touched]


def make_dir(db: Session, user: User, obj: OaiObject, path: str) -> FileEntry:
    """Create an explicit folder (and its missing parents); an existing name raises ``AlreadyExists``."""
    path = protocol.normalize_file_path(path)
    entries = index_of(obj)
    entries.prefetch([path, *protocol.parent_dirs(path)])
    if path in entries:
        raise AlreadyExists(f"{path!r} already exists", {"oaio_id": obj.oaio_id, "path": path,
                                                         "kind": entries[path].kind})
    _check_parents(obj, entries, path)
    _bump(obj)
    created = _ensure_parents(obj, entries, path)
    entry = _new_dir(obj, path, time.time_ns())
    _add(entries, obj, entry)
    touched = touch_parents(entries, path)
    finish(db, obj)
    _updated(db, obj, user, changed=[path, *created, *touched])
    return entry


def _get_entry(obj: OaiObject, entries: dict[str, FileEntry] | EntryIndex, path: str) -> FileEntry:
    entry = entries.get(path)
    if entry is None:
        raise NotFound(f"{path!r} not found in {obj.oaio_id!r}", {"oaio_id": obj.oaio_id, "path": path})
    return entry


def delete_path(db: Session, user: User, obj: OaiObject, path: str, base_version: int | None = None) -> list[str]:
    """Delete a file, or a folder with everything in it; returns the removed paths."""
    path = protocol.normalize_file_path(path)
    entries = index_of(obj)
    entry = _get_entry(obj, entries, path)
    check_file_base(obj, path, entry, base_version)
    doomed = _subtree(entries, path) if entry.kind == DIR else [entry]
    trash.keep_path(db, user, obj, path, doomed)      # restorable for the retention period (server/trash.py)
    for item in doomed:
        entries.remove(item)
    _bump(obj)
    touched = touch_parents(entries, path)
    finish(db, obj)
    removed = [e.path for e in doomed]
    _updated(db, obj, user, changed=touched, removed=removed)
    return removed


def move(db: Session, user: User, obj: OaiObject, src: str, dst: str, *, base_version: int | None = None,
         overwrite: bool = False) -> list[str]:
    """Move/rename a file or folder inside the object; returns the new paths.

    ``base_version`` is checked against the source's version. An existing
    destination is a 409 unless ``overwrite``; even then only a file may replace
    a file and a folder an *empty* folder (like ``rename(2)``).
    """
    src, dst = protocol.normalize_file_path(src), protocol.normalize_file_path(dst)
    entries = index_of(obj)
    entries.prefetch([src, dst, *protocol.parent_dirs(src), *protocol.parent_dirs(dst)])
    entry = _get_entry(obj, entries, src)
    check_file_base(obj, src, entry, base_version)
    if src == dst:
        raise InvalidValue("source and destination are the same", {"path": src})
    if dst.startswith(src + "/"):
        raise InvalidValue("cannot move a folder into itself", {"src": src, "dst": dst})
    _check_parents(obj, entries, dst)          # every refusal comes before the first change
    target = entries.get(dst)
    if target is not None:
        if not overwrite:
            raise AlreadyExists(f"{dst!r} already exists", {"oaio_id": obj.oaio_id, "path": dst})
        if (target.kind == DIR) != (entry.kind == DIR):      # files and links replace each other
            raise Conflict(f"cannot replace a {target.kind} with a {entry.kind}", {"path": dst})
        if target.kind == DIR and entries.has_below(dst):
            raise NotEmpty(f"folder {dst!r} is not empty", {"path": dst})
        entries.remove(target)
        db.flush()
    _bump(obj)
    created = _ensure_parents(obj, entries, dst)
    moved = _subtree(entries, src) if entry.kind == DIR else [entry]
    removed = [e.path for e in moved]
    for item in moved:
        del entries[item.path]
        item.path = dst + item.path[len(src):]
        item.version, item.stamp = obj.version, obj.stamp
        entries[item.path] = item
    touched = touch_parents(entries, src, dst)
    history.on_move(db, obj, src, dst)
    finish(db, obj)
    new_paths = [e.path for e in moved]
    _updated(db, obj, user, changed=[*new_paths, *created, *touched], removed=removed)
    return new_paths
