"""POSIX metadata of attached files: change mode/mtime without new bytes, and symbolic links.

Both run inside the caller's transaction on an object loaded ``for_update`` (like
:mod:`oaiofs.server.objects`), bump the object's version and emit ``updated``.
A metadata change moves the *object's* version on (so every subscriber hears of it
through the change feed) but not the file's own ``version``, which names its bytes:
caches of the bytes stay valid and a later upload based on that version is no conflict.
"""
from __future__ import annotations

import logging
import time

from sqlalchemy.orm import Session

from .. import protocol
from ..errors import InvalidValue
from .models import FileEntry, OaiObject, User
from .entry_index import finish, index_of
from .objects import _bump, _get_entry, _updated, check_file_base, place_entry, set_mtime

log = logging.getLogger(__name__)


def set_file_meta(db: Session, user: User, obj: OaiObject, path: str, *, mode: int | None = None,
                  mtime_ns: int | None = None, base_version: int | None = None) -> FileEntry:
    """chmod / utimes of a file, folder or link (a link's mode stays 0o777)."""
    path = protocol.normalize_file_path(path)
    if mode is None and mtime_ns is None:
        raise InvalidValue("nothing to change: give mode and/or mtime_ns")
    new_mode = protocol.validate_mode(mode) if mode is not None else None
    new_mtime = protocol.validate_mtime_ns(mtime_ns) if mtime_ns is not None else None
    entry = _get_entry(obj, index_of(obj), path)
    check_file_base(obj, path, entry, base_version)
    _bump(obj)
    if new_mode is not None and entry.kind != protocol.KIND_LINK:
        entry.mode = new_mode
    if new_mtime is not None:
        set_mtime(entry, new_mtime)
    finish(db, obj)
    _updated(db, obj, user, changed=[path])
    return entry


def make_link(db: Session, user: User, obj: OaiObject, path: str, target: str, *, mtime_ns: int | None = None,
              base_version: int | None = None) -> FileEntry:
    """Create (or replace a file/link by) a symbolic link to ``target``, stored as given."""
    path = protocol.normalize_file_path(path)
    target = protocol.validate_link_target(target)
    new_mtime = protocol.validate_mtime_ns(mtime_ns) if mtime_ns is not None else time.time_ns()
    entry, _, changed = place_entry(obj, path, base_version)
    entry.kind, entry.target, entry.mode = protocol.KIND_LINK, target, protocol.LINK_MODE
    entry.blob_key, entry.sha256, entry.size = None, None, len(target.encode("utf-8"))
    entry.version, entry.stamp = obj.version, obj.stamp
    set_mtime(entry, new_mtime)
    finish(db, obj)
    _updated(db, obj, user, changed=changed)
    log.debug("%s linked %s/%s -> %r", user.username, obj.oaio_id, path, target)
    return entry
