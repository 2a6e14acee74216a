"""The server trash: deleted files, folders and objects stay restorable for a retention period.

Hooks: :func:`keep_path` (called by ``objects.delete_path`` with the entries it removes)
and :func:`keep_object` (called by ``objects.delete_object``). A path deletion copies the
removed entries (with their blob keys) into ``trash_files``; an object deletion only
records who and when, because the tombstoned object keeps its file rows. Items expire
``trash_retention_s`` (setting, default 30 days) after the deletion; :func:`purge_expired`
(the server's periodic purge) then drops them, and for an expired deleted object its file
rows, so the blob collector can free the bytes (``blob_gc.referenced_keys`` counts
``trash_files``).

Rights (docs/api.md): any subscriber (also of a deleted object) lists its trash; a path is
restored by whoever could delete it (``C``, ``D``, ``U``); an object by ``C`` or ``D``; only
the creator empties. A path restored where a name exists again is put beside it as
``name (restored YYYY-mm-dd HH-MM-SS).ext``. Replacing a file (upload, ``move`` with
``overwrite``) is not a deletion: the replaced bytes belong to the version history.
Restoring lives in :mod:`oaiofs.server.trash_restore`, above the object service (this module
is below it: it never imports ``objects``).
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Iterable, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from .. import protocol
from ..errors import Forbidden
from . import db as dbmod
from . import history
from . import access
from .entry_index import path_hash
from .models import DIR, FILE, FileEntry, OaiObject, Subscription, User, load_values, utcnow
from .models_trash import TrashFile, TrashItem

log = logging.getLogger(__name__)

PURGE_BATCH = 200           # expired items dropped per transaction


# --------------------------------------------------------------------------- hooks
def keep_path(db: Session, user: User, obj: OaiObject, path: str, doomed: Iterable[FileEntry]) -> TrashItem:
    """Record a path deletion (``doomed``: the entry at ``path`` and its subtree) before it happens."""
    doomed = list(doomed)
    root = next((e for e in doomed if e.path == path), None)
    parent_path = path.rpartition("/")[0]
    parent = db.scalar(select(FileEntry).where(FileEntry.object_id == obj.id,          # one row, by its index
                                               FileEntry.path_hash == path_hash(parent_path))) if parent_path else None
    item = TrashItem(object_id=obj.id, kind="path", path=path, entry_kind=root.kind if root else "file",
                     version=obj.version + 1,           # called before delete_path bumps the version
                     first_version=obj.version + 1,
                     parent_mtime_ns=parent.mtime_ns if parent is not None else None,
                     files=sum(1 for e in doomed if e.kind == FILE),
                     size=sum(e.size or 0 for e in doomed if e.kind == FILE),
                     deleted=utcnow(), deleted_by=user.username)
    db.add(item)
    db.flush()
    db.add_all(TrashFile(trash_id=item.id, path=e.path, kind=e.kind, size=e.size or 0, sha256=e.sha256,
                         blob_key=e.blob_key, version=e.version, mtime=e.mtime or 0.0, mtime_ns=e.mtime_ns or 0,
                         mode=e.mode, target=e.target) for e in doomed)
    if item.entry_kind == DIR:
        _absorb(db, obj, item)
    return item


def _absorb(db: Session, obj: OaiObject, item: TrashItem) -> None:
    """Fold the deletions under a removed folder that came just before it into its item.

    ``rm -r`` through a mount deletes entry by entry, children first, each one change of the
    object: the deletions by the same user under the folder at the versions right below
    this one (no other change in between) become part of this item, so the trash shows one
    folder and restores it whole. A change by someone else in between ends the run (the
    earlier items stay, each restorable on its own).
    """
    prefix, expect, absorbed = item.path + "/", item.version - 1, []
    while expect > 0:
        prev = db.scalar(select(TrashItem).where(TrashItem.object_id == obj.id, TrashItem.version <= expect)
                         .order_by(TrashItem.version.desc()).limit(1))
        if (prev is None or prev.version != expect or prev.kind != "path" or not prev.path.startswith(prefix)
                or prev.deleted_by != item.deleted_by):
            break
        absorbed.append(prev)
        expect = min(prev.first_version or prev.version, prev.version) - 1    # past what it folded in already
    if not absorbed:
        return
    ids = [p.id for p in absorbed]
    for start in range(0, len(ids), 500):
        db.execute(update(TrashFile).where(TrashFile.trash_id.in_(ids[start:start + 500]))
                   .values(trash_id=item.id))
        db.execute(delete(TrashItem).where(TrashItem.id.in_(ids[start:start + 500])))
    # each deletion moved its folder's mtime: the folders get the mtime they had before the first one
    before: dict[str, int] = {}
    for prev in absorbed:                            # newest first: the oldest deletion wins
        folder = prev.path.rpartition("/")[0]
        if prev.parent_mtime_ns is not None and (folder == item.path or folder.startswith(prefix)):
            before[folder] = prev.parent_mtime_ns
    for folder, mtime_ns in before.items():
        db.execute(update(TrashFile).where(TrashFile.trash_id == item.id, TrashFile.path == folder)
                   .values(mtime_ns=mtime_ns, mtime=mtime_ns / 1e9))
    item.first_version = min(min(p.first_version or p.version, p.version) for p in absorbed)
    item.files += sum(p.files for p in absorbed)
    item.size += sum(p.size for p in absorbed)


def keep_object(db: Session, user: User, obj: OaiObject) -> TrashItem:
    """Record an object deletion (its file rows stay with the tombstone until the item expires)."""
    db.execute(delete(TrashItem).where(TrashItem.object_id == obj.id, TrashItem.kind == "object"))
    files = [f for f in obj.files if f.kind == FILE]
    item = TrashItem(object_id=obj.id, kind="object", path="", entry_kind="object", version=obj.version,
                     first_version=obj.version,
                     files=len(files),
                     size=sum(f.size or 0 for f in files), deleted=obj.deleted or utcnow(),
                     deleted_by=user.username)
    db.add(item)
    return item


# --------------------------------------------------------------------------- reading
def retention(settings: Any) -> dt.timedelta:
    return dt.timedelta(seconds=float(getattr(settings, "trash_retention_s", 30 * 86400.0)))


def _doc(item: TrashItem, obj: Any, keep: dt.timedelta) -> dict[str, Any]:
    name = load_values(obj.values_json).get("_name")
    deleted = dbmod.aware(item.deleted)
    return {"id": item.id, "oaio_id": obj.oaio_id, "name": name if isinstance(name, str) else None,
            "kind": item.kind, "path": item.path, "entry_kind": item.entry_kind, "files": item.files,
            "size": item.size, "deleted": deleted.isoformat(), "deleted_by": item.deleted_by,
            "expires": (deleted + keep).isoformat(), "object_deleted": obj.deleted is not None}


def list_items(db: Session, user: User, settings: Any, oaio_id: str | None = None) -> list[dict[str, Any]]:
    """Trash items of one object, or of every object the caller is subscribed to; newest first."""
    keep = retention(settings)
    stmt = (select(TrashItem, OaiObject).join(OaiObject, OaiObject.id == TrashItem.object_id)
            .join(Subscription, (Subscription.object_id == OaiObject.id) & (Subscription.user_id == user.id))
            .where(TrashItem.deleted > utcnow() - keep)
            .order_by(TrashItem.deleted.desc(), TrashItem.id.desc()))
    if oaio_id is not None:
        obj, _right = access.load_visible(db, user, oaio_id)
        stmt = stmt.where(TrashItem.object_id == obj.id)
    return [_doc(item, obj, keep) for item, obj in db.execute(stmt)]


# --------------------------------------------------------------------------- removing
def _drop_items(db: Session, items: list[TrashItem]) -> int:
    """Remove ``items`` for good; a deleted object's item also takes its file rows (and other items)."""
    removed = 0
    for item in items:
        if item.kind == "object":
            obj = db.get(OaiObject, item.object_id)
            if obj is not None and obj.deleted is not None:
                db.execute(delete(FileEntry).where(FileEntry.object_id == obj.id))
                history.forget_deleted(db, obj.id)          # gone for good: its history too
                db.expire(obj, ["files"])
                others = db.scalars(select(TrashItem.id).where(TrashItem.object_id == obj.id)).all()
                db.execute(delete(TrashFile).where(TrashFile.trash_id.in_(others)))
                removed += cast("CursorResult[Any]", db.execute(delete(TrashItem).where(TrashItem.object_id == obj.id))).rowcount or 0
                continue
        paths = db.scalars(select(TrashFile.path).where(TrashFile.trash_id == item.id,
                                                        TrashFile.kind == FILE)).all()
        history.forget_deleted(db, item.object_id, paths)    # the deleted files' versions go with the item
        db.execute(delete(TrashFile).where(TrashFile.trash_id == item.id))
        removed += cast("CursorResult[Any]", db.execute(delete(TrashItem).where(TrashItem.id == item.id))).rowcount or 0
    return removed


def empty(db: Session, user: User, oaio_id: str | None = None) -> int:
    """Empty the trash of one object (creator only: 403 otherwise) or of every object the caller created."""
    dbmod.lock_for_write(db)
    if oaio_id is not None:
        obj, right = access.load_visible(db, user, oaio_id, for_update=True)
        if right != protocol.CREATE_ACCESS_RIGHT:
            raise Forbidden(f"only the creator empties the trash of {oaio_id!r}",
                            {"oaio_id": oaio_id, "access_right": right, "need": "owner"})
        object_ids = [obj.id]
    else:
        object_ids = list(db.scalars(select(Subscription.object_id).where(
            Subscription.user_id == user.id, Subscription.access_right == protocol.CREATE_ACCESS_RIGHT)))
    items: list[TrashItem] = []
    for start in range(0, len(object_ids), 500):
        items += db.scalars(select(TrashItem).where(TrashItem.object_id.in_(object_ids[start:start + 500]))
                            .order_by(TrashItem.kind.desc())).all()       # "path" before "object"
    removed = _drop_items(db, items)
    log.info("%s emptied the trash of %s: %d item(s)", user.username, oaio_id or "their objects", removed)
    return removed


def purge_expired(state: Any) -> int:
    """Hook for the server's periodic purge: drop items past the retention period.

    Tombstones deleted before there was a trash (no item) are treated alike: past the
    retention their file rows go, so the blob collector frees their bytes.
    """
    cutoff = utcnow() - retention(state.settings)
    total = 0
    while True:
        with dbmod.transaction(state) as db:
            expired = select(TrashItem).where(TrashItem.deleted <= cutoff).order_by(TrashItem.id).limit(PURGE_BATCH)
            if db.scalar(expired.with_only_columns(TrashItem.id)) is None:
                break
            dbmod.lock_for_write(db)           # read again under the write lock
            total += _drop_items(db, list(db.scalars(expired).all()))
    with dbmod.transaction(state) as db:
        has_item = select(TrashItem.id).where(TrashItem.object_id == OaiObject.id, TrashItem.kind == "object")
        legacy = db.scalars(select(OaiObject.id).where(OaiObject.deleted.is_not(None), OaiObject.deleted <= cutoff,
                                                       ~has_item.exists())
                            .where(select(FileEntry.id).where(FileEntry.object_id == OaiObject.id).exists())).all()
        if legacy:
            dbmod.lock_for_write(db)
            db.execute(delete(FileEntry).where(FileEntry.object_id.in_(legacy)))
    if total or legacy:
        log.info("trash: %d expired item(s) purged, %d old tombstone(s) emptied", total, len(legacy))
    return total


def count_items(db: Session) -> int:
    return int(db.scalar(select(func.count(TrashItem.id))) or 0)
