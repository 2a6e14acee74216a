"""Version history: every committed version of a file and every values change of an object.

Recorded by one-line hooks in :mod:`oaiofs.server.objects` (``create_object``,
``update_values``, ``commit_file``, ``move``) inside the caller's transaction, so a version
is in the history exactly when it is committed. Every upload path (tus, plain PUT, the
ae.oaio_client layer) commits through ``objects.commit_file``.

* A file version is the object version at which the bytes were committed (the file's
  ``version``); it keeps blob key, size, sha256, mode, mtime_ns, author and time.
  A move carries the history of the moved files to their new paths (an editor's
  "write a temporary file, rename it over the original" keeps the original's history).
* A values version is the object version a values change produced.
* Restoring commits the old bytes (or values) again as a *new* version, with the same
  ``base_version`` check as a PUT (``objects.commit_file`` / ``objects.update_values``),
  so it reaches every subscriber through the change feed like any other change. It lives in
  :mod:`oaiofs.server.history_restore`, above the object service (this module is below it:
  it never imports ``objects`` or ``blob_gc``).
* Retention (:func:`trim`, run by the periodic purge and ``oaiofs gc``): a version is kept
  while it is one of the newest ``history_keep_versions`` of its file (or object, for values)
  or younger than ``history_keep_days``; never more than ``history_max_versions``. The blobs
  of trimmed versions become garbage for :mod:`oaiofs.server.blob_gc` (which asks
  :func:`blob_refs` what the kept versions still need).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import Any, Collection, cast

from sqlalchemy import CursorResult, and_, delete, exists, false, func, or_, select
from sqlalchemy.orm import Session

from .. import protocol
from ..errors import NotFound
from . import db as dbmod
from .models import FileEntry, OaiObject, User, load_values, utcnow
from .models_history import FileVersion, ValuesVersion

log = logging.getLogger(__name__)

MAX_VERSION = 2 ** 31 - 1        # versions are 32-bit integers in the database
DELETE_BATCH = 500


def _hash(path: str) -> str:
    return hashlib.sha256(path.encode("utf-8")).hexdigest()




# --- hooks (called by objects.py inside the caller's transaction) ---
def record_file(db: Session, user: User | None, obj: OaiObject, entry: FileEntry) -> None:
    """``entry`` was just committed: keep this version."""
    if entry.blob_key is None or entry.sha256 is None:
        return
    db.add(FileVersion(object_id=obj.id, path=entry.path, path_hash=_hash(entry.path), version=entry.version,
                       size=entry.size, sha256=entry.sha256, blob_key=entry.blob_key, mode=entry.mode,
                       mtime_ns=entry.mtime_ns, author=user.username if user is not None else None,
                       created=utcnow()))


def record_values(db: Session, user: User | None, obj: OaiObject) -> None:
    """The values of ``obj`` just changed (or were created): keep them."""
    db.add(ValuesVersion(object_id=obj.id, version=obj.version, values_json=obj.values_json,
                         author=user.username if user is not None else None, created=utcnow()))


def on_move(db: Session, obj: OaiObject, src: str, dst: str) -> None:
    """``src`` (a file or a folder) became ``dst``: its files' histories move along."""
    rows = db.scalars(select(FileVersion).where(
        FileVersion.object_id == obj.id,
        or_(FileVersion.path_hash == _hash(src), FileVersion.path.startswith(src + "/", autoescape=True))))
    for row in rows:
        row.path = dst + row.path[len(src):]
        row.path_hash = _hash(row.path)


# --- documents ---
def _file_version_doc(row: FileVersion, current: bool) -> dict[str, Any]:
    return {"version": row.version, "size": row.size, "sha256": row.sha256, "modified": dbmod.iso(row.created),
            "author": row.author, "mode": row.mode, "mtime_ns": row.mtime_ns, "current": current,
            "restored_from": row.restored_from}


def _values_version_doc(row: ValuesVersion, current: bool, with_values: bool = False) -> dict[str, Any]:
    raw = (row.values_json or "{}").encode("utf-8")
    doc = {"version": row.version, "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
           "modified": dbmod.iso(row.created), "author": row.author, "current": current,
           "restored_from": row.restored_from}
    if with_values:
        doc["values"] = load_values(row.values_json)
    return doc


def parse_version(raw: str) -> int:
    """A version number from a URL: ASCII digits (400 otherwise); beyond 32 bits no version exists (404)."""
    value = protocol.parse_ascii_int(str(raw), "version")
    if value > MAX_VERSION:
        raise NotFound(f"there is no version {value}", {"version": value})
    return value


# --- files ---
def _entry(db: Session, obj: OaiObject, path: str) -> FileEntry | None:
    return db.scalar(select(FileEntry).where(FileEntry.object_id == obj.id, FileEntry.path_hash == _hash(path)))


def _file_rows(db: Session, obj: OaiObject, path: str) -> list[FileVersion]:
    return list(db.scalars(select(FileVersion)
                           .where(FileVersion.object_id == obj.id, FileVersion.path_hash == _hash(path))
                           .order_by(FileVersion.version.desc(), FileVersion.id.desc())))


def file_versions(db: Session, obj: OaiObject, path: str) -> dict[str, Any]:
    """The kept versions of the file at ``path`` (newest first); 404 if it has none."""
    path = protocol.normalize_file_path(path)
    entry = _entry(db, obj, path)
    if entry is not None and entry.kind == "dir":
        raise NotFound(f"{path!r} is a folder: versions are kept for files",
                       {"oaio_id": obj.oaio_id, "path": path, "kind": "dir"})
    rows = _file_rows(db, obj, path)
    if not rows:
        raise NotFound(f"no versions of {path!r} in {obj.oaio_id!r}", {"oaio_id": obj.oaio_id, "path": path})
    current_key = entry.blob_key if entry is not None and entry.kind == "file" else None
    docs = [_file_version_doc(row, i == 0 and row.blob_key == current_key) for i, row in enumerate(rows)]
    return {"oaio_id": obj.oaio_id, "path": path, "exists": entry is not None and entry.kind == "file",
            "current_version": entry.version if entry is not None else 0, "versions": docs}


def file_version(db: Session, obj: OaiObject, path: str, version: int) -> FileVersion:
    """The kept version ``version`` of ``path`` (404 naming the kept ones otherwise)."""
    path = protocol.normalize_file_path(path)
    rows = _file_rows(db, obj, path)
    for row in rows:
        if row.version == version:
            return row
    if not rows:
        raise NotFound(f"no versions of {path!r} in {obj.oaio_id!r}", {"oaio_id": obj.oaio_id, "path": path})
    raise NotFound(f"{path!r} has no version {version} (kept: {', '.join(str(r.version) for r in rows[:20])})",
                   {"oaio_id": obj.oaio_id, "path": path, "version": version,
                    "versions": [r.version for r in rows]})


# --- values ---
def _values_rows(db: Session, obj: OaiObject) -> list[ValuesVersion]:
    return list(db.scalars(select(ValuesVersion).where(ValuesVersion.object_id == obj.id)
                           .order_by(ValuesVersion.version.desc(), ValuesVersion.id.desc())))


def values_versions(db: Session, obj: OaiObject) -> dict[str, Any]:
    """The kept values versions of ``obj`` (newest first, without the values themselves)."""
    rows = _values_rows(db, obj)
    current = obj.values_json
    docs = [_values_version_doc(row, i == 0 and row.values_json == current) for i, row in enumerate(rows)]
    return {"oaio_id": obj.oaio_id, "current_version": obj.version, "versions": docs}


def values_version(db: Session, obj: OaiObject, version: int) -> ValuesVersion:
    """Kept values version ``version`` of ``obj`` (404 naming the kept ones otherwise)."""
    rows = _values_rows(db, obj)
    for row in rows:
        if row.version == version:
            return row
    raise NotFound(f"the values of {obj.oaio_id!r} have no version {version} "
                   f"(kept: {', '.join(str(r.version) for r in rows[:20]) or 'none'})",
                   {"oaio_id": obj.oaio_id, "version": version, "versions": [r.version for r in rows]})


def values_version_doc(db: Session, obj: OaiObject, version: int) -> dict[str, Any]:
    """One kept values version with its values."""
    row = values_version(db, obj, version)
    return dict(_values_version_doc(row, row.values_json == obj.values_json, with_values=True),
                oaio_id=obj.oaio_id)


# --- retention ---
def _doomed(model: Any, partition: tuple[Any, ...], keep: int, cutoff: dt.datetime, cap: int,
            live: Any = None) -> Any:
    """Ids of the rows the policy drops: past the newest ``keep`` and older than ``cutoff``, past the
    newest ``cap``, or (``live`` false: the file is gone) older than ``cutoff``."""
    rank = func.row_number().over(partition_by=partition, order_by=(model.version.desc(), model.id.desc()))
    columns = [model.id.label("id"), model.created.label("created"), rank.label("rank")]
    if live is not None:
        columns.append(live.label("live"))
    ranked = select(*columns).subquery()
    old = ranked.c.created < cutoff
    conditions = [and_(ranked.c.rank > keep, old)]
    if cap > 0:
        conditions.append(ranked.c.rank > cap)
    if live is not None:
        conditions.append(and_(ranked.c.live == false(), old))
    return select(ranked.c.id).where(or_(*conditions))


def trim(db: Session, settings: Any, now: dt.datetime | None = None) -> tuple[int, int]:
    """Drop the versions the retention policy no longer keeps; returns (file versions, values versions).

    A version stays while it is one of the newest ``history_keep_versions`` of its file (values:
    of its object) or younger than ``history_keep_days``, and never past the newest
    ``history_max_versions``. The versions of a file that no longer exists (deleted, or
    replaced by a folder or link) stay only for ``history_keep_days``.
    """
    keep = max(1, int(settings.history_keep_versions))
    cutoff = (now or utcnow()) - dt.timedelta(days=float(settings.history_keep_days))
    cap = max(keep, int(settings.history_max_versions)) if settings.history_max_versions else 0
    live = exists().where(FileEntry.object_id == FileVersion.object_id,
                          FileEntry.path_hash == FileVersion.path_hash, FileEntry.kind == "file")
    counts = []
    for model, partition, alive in ((FileVersion, (FileVersion.object_id, FileVersion.path_hash), live),
                                    (ValuesVersion, (ValuesVersion.object_id,), None)):
        ids = list(db.scalars(_doomed(model, partition, keep, cutoff, cap, alive)))
        for start in range(0, len(ids), DELETE_BATCH):
            db.execute(delete(model).where(model.id.in_(ids[start:start + DELETE_BATCH])))
        counts.append(len(ids))
    return counts[0], counts[1]


def forget_deleted(db: Session, object_id: int, paths: Collection[str] | None = None) -> int:
    """The trash let go of a deletion (emptied, or past its retention): drop the versions of ``paths``
    that no longer exist (``None``: every file of a deleted object, and its values versions too), so
    what the user threw away for good frees its bytes. A path that exists again keeps its history."""
    live = exists().where(FileEntry.object_id == FileVersion.object_id,
                          FileEntry.path_hash == FileVersion.path_hash, FileEntry.kind == "file")
    dropped = 0
    if paths is None:
        dropped += cast("CursorResult[Any]", db.execute(delete(ValuesVersion).where(ValuesVersion.object_id == object_id))).rowcount or 0
        dropped += cast("CursorResult[Any]", db.execute(delete(FileVersion).where(FileVersion.object_id == object_id, ~live))).rowcount or 0
        return dropped
    hashes = sorted({_hash(path) for path in paths})
    for start in range(0, len(hashes), DELETE_BATCH):
        dropped += cast("CursorResult[Any]", db.execute(delete(FileVersion).where(
            FileVersion.object_id == object_id, FileVersion.path_hash.in_(hashes[start:start + DELETE_BATCH]),
            ~live))).rowcount or 0
    return dropped


def purge_expired(state: Any) -> int:
    """Hook for the server's periodic purge (and ``oaiofs gc``): one retention pass."""
    with dbmod.transaction(state) as db:
        files, values = trim(db, state.settings)
    if files or values:
        log.info("history: trimmed %d file versions and %d values versions", files, values)
    return files + values


def blob_refs(keys: Collection[str] | None) -> Any:
    """The blob keys the kept file versions need (for :func:`oaiofs.server.blob_gc.referenced_keys`)."""
    query = select(FileVersion.blob_key.label("ref"))
    return query if keys is None else query.where(FileVersion.blob_key.in_(keys))
