"""Restoring from the trash (:mod:`oaiofs.server.trash`): a deleted path or a deleted object comes back.

Rights (docs/api.md): a path is restored by whoever could delete it (``C``, ``D``, ``U``); an
object by ``C`` or ``D``. A path restored where a name exists again is put beside it as
``name (restored YYYY-mm-dd HH-MM-SS).ext``. It sits above :mod:`~oaiofs.server.objects`, which
calls the trash's recording hooks below it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import posixpath
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .. import protocol
from ..errors import Conflict, Forbidden, Gone, NotFound
from . import access, changes, objects
from . import db as dbmod
from .models import FileEntry, OaiObject, Subscription, User, utcnow
from .models_trash import TrashFile, TrashItem
from .trash import retention

log = logging.getLogger(__name__)

RESTORED_FORMAT = "%Y-%m-%d %H-%M-%S"


def restored_name(path: str, taken: Any, when: dt.datetime, is_dir: bool) -> str:
    """``a/name (restored 2026-01-02 03-04-05).ext``: a free name beside ``path``."""
    folder, name = posixpath.split(path)
    stem, ext = (name, "") if is_dir or name.startswith(".") else posixpath.splitext(name)
    label = f"restored {when.strftime(RESTORED_FORMAT)}"
    for n in range(1, 1000):
        candidate = f"{stem} ({label}{'' if n == 1 else f' {n}'}){ext}"
        full = posixpath.join(folder, candidate) if folder else candidate
        if full not in taken:
            return protocol.normalize_file_path(full)
    raise Conflict(f"no free name to restore {path!r} beside", {"path": path})


def _find_item(db: Session, obj: OaiObject, path: str | None, item_id: int | None,
               keep: dt.timedelta) -> tuple[TrashItem, str]:
    live = TrashItem.deleted > utcnow() - keep
    if item_id is not None:
        item = db.scalar(select(TrashItem).where(TrashItem.id == item_id, TrashItem.object_id == obj.id,
                                                 TrashItem.kind == "path", live))
        if item is None:
            raise NotFound(f"trash item {item_id} of {obj.oaio_id!r} not found (or expired)",
                           {"oaio_id": obj.oaio_id, "id": item_id})
        if path is None:
            return item, item.path
        if path != item.path and not path.startswith(item.path + "/"):
            raise NotFound(f"{path!r} is not in trash item {item_id}", {"oaio_id": obj.oaio_id, "path": path,
                                                                         "id": item_id})
        return item, path
    assert path is not None
    candidates = [path, *protocol.parent_dirs(path)]
    hashes = [hashlib.sha256(p.encode("utf-8")).hexdigest() for p in candidates]
    items = db.scalars(select(TrashItem).where(TrashItem.object_id == obj.id, TrashItem.kind == "path",
                                               TrashItem.path_hash.in_(hashes), live)
                       .order_by(TrashItem.deleted.desc(), TrashItem.id.desc())).all()
    for item in items:
        if item.path == path or db.scalar(select(TrashFile.id).where(TrashFile.trash_id == item.id,
                                                                     TrashFile.path == path).limit(1)):
            return item, path
    raise NotFound(f"{path!r} of {obj.oaio_id!r} is not in the trash", {"oaio_id": obj.oaio_id, "path": path})


def restore_path(db: Session, user: User, obj: OaiObject, settings: Any, path: str | None = None,
                 item_id: int | None = None) -> dict[str, Any]:
    """Bring a deleted file or folder (or a part of a deleted folder) back with its bytes and metadata.

    ``obj`` is loaded for update (C/D/U). Returns ``{"path", "restored_as", "paths"}``.
    """
    if path is not None:
        path = protocol.normalize_file_path(path)
    item, path = _find_item(db, obj, path, item_id, retention(settings))
    rows = db.scalars(select(TrashFile).where(TrashFile.trash_id == item.id).order_by(TrashFile.path)).all()
    by_path = {r.path: r for r in rows}
    mine = [r for r in rows if r.path == path or r.path.startswith(path + "/")]
    if not mine or path not in by_path:
        raise NotFound(f"{path!r} of {obj.oaio_id!r} is not in the trash", {"oaio_id": obj.oaio_id, "path": path})
    entries = {f.path: f for f in obj.files}
    now = dt.datetime.now(dt.timezone.utc)
    dst = path if path not in entries else restored_name(path, entries, now, by_path[path].kind == objects.DIR)
    objects._check_parents(obj, entries, dst)          # a file where a parent folder must be: 409
    objects._bump(obj)
    created = objects._ensure_parents(obj, entries, dst)
    new_paths = []
    for row in mine:
        new_path = dst + row.path[len(path):]
        entry = FileEntry(path=new_path, kind=row.kind, size=row.size, sha256=row.sha256, blob_key=row.blob_key,
                          version=obj.version, stamp=obj.stamp, mode=row.mode, target=row.target)
        objects.set_mtime(entry, row.mtime_ns)
        obj.files.append(entry)
        entries[new_path] = entry
        new_paths.append(new_path)
    touched = objects.touch_parents(entries, dst)
    if dst == path:                     # parents deleted with the item come back with their mode and mtime
        for parent in created:
            old = by_path.get(parent)
            if old is not None and old.kind == objects.DIR:
                entries[parent].mode = old.mode
                objects.set_mtime(entries[parent], old.mtime_ns)
    ids = [r.id for r in mine]
    for start in range(0, len(ids), 500):
        db.execute(delete(TrashFile).where(TrashFile.id.in_(ids[start:start + 500])))
    left = [r for r in rows if r.id not in set(ids)]
    if not any(r.kind == objects.FILE or r.path == item.path for r in left):
        db.execute(delete(TrashFile).where(TrashFile.trash_id == item.id))
        db.delete(item)
    else:
        item.files = sum(1 for r in left if r.kind == objects.FILE)
        item.size = sum(r.size for r in left if r.kind == objects.FILE)
    db.flush()
    objects._updated(db, obj, user, changed=[*new_paths, *created, *touched])
    log.info("%s restored %r of %r from the trash as %r", user.username, path, obj.oaio_id, dst)
    return {"oaio_id": obj.oaio_id, "path": path, "restored_as": dst, "paths": new_paths}


def restore_object(db: Session, user: User, oaio_id: str, settings: Any) -> OaiObject:
    """Undelete an object (C or D): its files, values and subscriptions come back for every subscriber."""
    obj, right = access.load_visible(db, user, oaio_id, for_update=True)
    if obj.deleted is None:
        raise Conflict(f"object {oaio_id!r} is not deleted (restore a path in it instead)", {"oaio_id": oaio_id})
    if not protocol.can_delete(right):
        raise Forbidden(f"access right {right!r} does not allow to restore object {oaio_id!r} (needs C or D)",
                        {"oaio_id": oaio_id, "access_right": right, "need": "delete"})
    item = db.scalar(select(TrashItem).where(TrashItem.object_id == obj.id, TrashItem.kind == "object"))
    if item is None or dbmod.aware(item.deleted) <= utcnow() - retention(settings) or not obj.files and item.files:
        raise Gone(f"object {oaio_id!r} was deleted and is no longer in the trash", {"oaio_id": oaio_id})
    objects._bump(obj)
    obj.deleted = None
    db.delete(item)
    db.flush()
    for sub_right, user_id in db.execute(select(Subscription.access_right, Subscription.user_id)
                                         .where(Subscription.object_id == obj.id)):
        changes.emit(db, obj, protocol.EVENT_CREATED, {"access_right": sub_right, "restored": True}, [user_id],
                     actor=user)
    log.info("%s restored object %r from the trash", user.username, oaio_id)
    return obj
