"""Restoring a kept version (:mod:`oaiofs.server.history`): the old bytes or values committed again.

A restore commits through the object service (``objects.commit_file`` / ``objects.update_values``)
as a *new* version, with the same ``base_version`` check as a PUT, so it reaches every subscriber
through the change feed like any other change. It sits above :mod:`~oaiofs.server.objects`, which
calls the history's recording hooks below it.
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import protocol
from ..errors import Conflict, Gone
from . import blob_gc, objects
from .history import _hash, file_version, values_version
from .models import FileEntry, OaiObject, User
from .models_history import FileVersion, ValuesVersion

log = logging.getLogger(__name__)


def restore_file(db: Session, user: User, obj: OaiObject, path: str, version: int, *,
                 base_version: int | None, blobs: Any = None) -> tuple[FileEntry, FileVersion]:
    """Commit the bytes of kept version ``version`` of ``path`` again, as a new version.

    ``base_version`` is checked like a PUT (the file's current version; 0 = must not exist).
    The mode of the old version comes back; the mtime is now (the bytes changed).
    """
    path = protocol.normalize_file_path(path)
    row = file_version(db, obj, path, version)
    blob_gc.lock_for_commit(db)
    if blobs is not None and not blobs.exists(row.blob_key):
        raise Gone(f"the bytes of version {version} of {path!r} are no longer stored",
                   {"oaio_id": obj.oaio_id, "path": path, "version": version})
    entry = objects.commit_file(db, user, obj, path, blob_key=row.blob_key, size=row.size, sha256=row.sha256,
                                mtime=None, base_version=base_version, mode=row.mode)
    new = db.scalar(select(FileVersion).where(FileVersion.object_id == obj.id, FileVersion.path_hash == _hash(path),
                                              FileVersion.version == entry.version))
    if new is None:                        # pragma: no cover - commit_file records every version
        raise Conflict("the restored version was not recorded", {"path": path})
    new.restored_from = version
    log.info("%s restored %r of %r to version %d (new version %d)", user.username, path, obj.oaio_id, version,
             entry.version)
    return entry, new


def restore_values(db: Session, user: User, obj: OaiObject, version: int, *, base_version: int | None) -> OaiObject:
    """Set the values of kept version ``version`` again (replace), as a new object version."""
    row = values_version(db, obj, version)
    objects.update_values(db, user, obj, objects.load_values(row.values_json), mode="replace",
                          base_version=base_version)
    new = db.scalar(select(ValuesVersion).where(ValuesVersion.object_id == obj.id,
                                                ValuesVersion.version == obj.version))
    if new is not None:
        new.restored_from = version
    log.info("%s restored the values of %r to version %d (new version %d)", user.username, obj.oaio_id, version,
             obj.version)
    return obj
