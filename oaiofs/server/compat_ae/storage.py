"""The storage side of the ``Oaiofs`` csh plugin (:mod:`oaiofs.compat.ae_storage`): ``<root>/api/csh/files/…``.

The seed client deploys a version's files at ``<oaio_id>/<client_stamp>/<path>``
*before* it calls ``register/``/``upload/``, so a ``PUT`` stages the bytes (a
content-addressed blob plus a :class:`~oaiofs.server.models_compat.CompatAeStagedFile`
row) and ``register/``/``upload/`` attach them as the object's files. A ``GET``
of the stamp the server currently reports serves the object's current file
(also after native changes); other stamps serve staged files only.

Rights: staging into an existing object needs C/D/U; reading needs any right;
strangers get 404. Callers authenticate with the short-lived bearer token that
``csh_args/Oaiofs`` hands out (any oaiofs token works).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from typing import Any, cast

from fastapi import APIRouter, Request, Response
from sqlalchemy import CursorResult, delete, select
from starlette.concurrency import run_in_threadpool

from ... import protocol
from ...errors import InvalidValue, NotFound, TooLarge
from .. import access, blob_gc, deps
from ..blobs import blob_key
from ..byteranges import blob_response
from ..models import FileEntry, OaiObject, User
from ..models_compat import CompatAeStagedFile
from ..deps import authenticate
from ..state import transaction, transfer_state
from . import service

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/csh", tags=["ae compatibility"])


def split_storage_path(raw: str, *, need_file: bool = True) -> tuple[str, str, str]:
    """``<oaio_id>/<stamp>/<path>`` → (id, stamp, normalized path); ``need_file=False`` allows a bare stamp."""
    parts = raw.strip("/").split("/", 2)
    if len(parts) < 2 or (need_file and len(parts) < 3):
        raise InvalidValue("storage paths are '<oaio_id>/<stamp>/<file path>'", {"path": raw[:200]})
    oaio_id, stamp = service.check_id(parts[0]), parts[1]
    if not protocol.is_stamp(stamp):
        raise InvalidValue("the second part of a storage path must be a 20-digit stamp", {"stamp": stamp[:40]})
    path = protocol.normalize_file_path(parts[2]) if len(parts) == 3 and parts[2] else ""
    return oaio_id, stamp, path


def _check_stage_target(state: Any, user_id: int, oaio_id: str) -> None:
    with transaction(state) as db:
        user = db.get_one(User, user_id)
        if db.scalar(select(OaiObject.id).where(OaiObject.oaio_id == oaio_id)) is not None:
            access.load_object(db, user, oaio_id, "update")     # 404 stranger, 403 reader, 410 deleted


def _record(state: Any, user_id: int, oaio_id: str, stamp: str, path: str, key: str, size: int, sha256: str) -> None:
    with transaction(state) as db:
        blob_gc.lock_for_commit(db)      # the row refers to the blob before it is committed (see blob_gc)
        db.execute(delete(CompatAeStagedFile).where(
            CompatAeStagedFile.user_id == user_id, CompatAeStagedFile.oaio_id == oaio_id,
            CompatAeStagedFile.stamp == stamp, CompatAeStagedFile.path == path))
        db.add(CompatAeStagedFile(user_id=user_id, oaio_id=oaio_id, stamp=stamp, path=path, blob_key=key,
                                  size=size, sha256=sha256))


def _unrecord(state: Any, user_id: int, oaio_id: str, stamp: str, path: str) -> None:
    with transaction(state) as db:
        db.execute(delete(CompatAeStagedFile).where(
            CompatAeStagedFile.user_id == user_id, CompatAeStagedFile.oaio_id == oaio_id,
            CompatAeStagedFile.stamp == stamp, CompatAeStagedFile.path == path))


@router.put("/files/{raw:path}")
async def put_file(raw: str, request: Request) -> dict[str, Any]:
    """Stage the body as ``<path>`` of version ``<stamp>`` of ``<oaio_id>``."""
    state = transfer_state(request)
    oaio_id, stamp, path = split_storage_path(raw)
    user_id = await run_in_threadpool(authenticate, request)
    await run_in_threadpool(_check_stage_target, state, user_id, oaio_id)
    limit = state.settings.max_upload_bytes
    staging_id = "aestage-" + secrets.token_urlsafe(18)
    staging = await run_in_threadpool(state.blobs.staging_create, staging_id)
    hasher, size = hashlib.sha256(), 0
    try:
        async for chunk in request.stream():
            if not chunk:
                continue
            if size + len(chunk) > limit:
                raise TooLarge(f"the file is larger than {limit} bytes", {"max_size": limit})
            hasher.update(chunk)
            staging = await run_in_threadpool(state.blobs.staging_write, staging_id, size, chunk, staging)
            size += len(chunk)
        sha256 = hasher.hexdigest()
        announced = request.headers.get(protocol.HEADER_SHA256)
        if announced and announced.lower() != sha256:
            raise InvalidValue("the body does not match X-OAIO-Sha256; nothing was stored",
                               {"expected": announced[:64], "actual": sha256})
        key = blob_key(sha256)
        await run_in_threadpool(_record, state, user_id, oaio_id, stamp, path, key, size, sha256)
        try:
            await run_in_threadpool(state.blobs.staging_commit, staging_id, key, staging)
        except BaseException:
            await run_in_threadpool(_unrecord, state, user_id, oaio_id, stamp, path)
            raise
    except BaseException:
        await run_in_threadpool(state.blobs.staging_delete, staging_id, staging)
        raise
    log.info("staged %s/%s/%s (%d bytes) for user %d", oaio_id, stamp, path, size, user_id)
    return {"path": f"{oaio_id}/{stamp}/{path}", "size": size, "sha256": sha256}


def _file_info(state: Any, request: Request, oaio_id: str, stamp: str, path: str) -> dict[str, Any]:
    with transaction(state) as db:
        user = deps.get_current_user(request, db)
        obj, _right = access.load_object(db, user, oaio_id, "read")
        if stamp == service.current_stamp_of(db, obj):
            entry = db.scalar(select(FileEntry).where(FileEntry.object_id == obj.id, FileEntry.path == path))
            if entry is not None and entry.kind == "file" and entry.blob_key:
                return {"blob_key": entry.blob_key, "sha256": entry.sha256, "size": entry.size,
                        "version": entry.version, "mtime": entry.mtime}
        row = db.scalar(select(CompatAeStagedFile).where(
            CompatAeStagedFile.oaio_id == oaio_id, CompatAeStagedFile.stamp == stamp,
            CompatAeStagedFile.path == path).order_by(CompatAeStagedFile.id.desc()).limit(1))
        if row is None:
            raise NotFound(f"no file {path!r} at stamp {stamp} of {oaio_id!r}",
                           {"oaio_id": oaio_id, "stamp": stamp, "path": path})
        return {"blob_key": row.blob_key, "sha256": row.sha256, "size": row.size, "version": obj.version,
                "mtime": 0.0}


@router.api_route("/files/{raw:path}", methods=["GET", "HEAD"], response_class=Response)
async def get_file(raw: str, request: Request) -> Response:
    """The bytes of ``<path>`` at ``<stamp>`` (the current stamp: the object's current file)."""
    state = transfer_state(request)
    oaio_id, stamp, path = split_storage_path(raw)
    info = await run_in_threadpool(_file_info, state, request, oaio_id, stamp, path)
    return blob_response(request, state.blobs, info)


def _drop_staged(state: Any, request: Request, oaio_id: str, stamp: str, path: str) -> int:
    with transaction(state) as db:
        user = deps.get_current_user(request, db)
        stmt = delete(CompatAeStagedFile).where(CompatAeStagedFile.user_id == user.id,
                                                CompatAeStagedFile.oaio_id == oaio_id,
                                                CompatAeStagedFile.stamp == stamp)
        if path:
            stmt = stmt.where((CompatAeStagedFile.path == path) | CompatAeStagedFile.path.startswith(path + "/"))
        return int(cast("CursorResult[Any]", db.execute(stmt)).rowcount or 0)


@router.delete("/files/{raw:path}")
async def delete_files(raw: str, request: Request) -> dict[str, Any]:
    """Drop the caller's staged files under ``<oaio_id>/<stamp>[/<path>]`` (object files are not touched:
    the seed client calls this after ``delete/``, which already made the tombstone)."""
    state = transfer_state(request)
    oaio_id, stamp, path = split_storage_path(raw, need_file=False)
    return {"deleted": await run_in_threadpool(_drop_staged, state, request, oaio_id, stamp, path)}


def purge_expired(state: Any) -> int:
    """Drop staged files never attached (older than the upload expiry); called by the server's purge loop.

    The blobs stay: they are content-addressed and may be shared with attached files.
    """
    cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=state.settings.upload_expiry_s)
    with transaction(state) as db:
        return int(cast("CursorResult[Any]", db.execute(delete(CompatAeStagedFile).where(CompatAeStagedFile.created < cutoff))).rowcount or 0)
