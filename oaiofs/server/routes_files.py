"""Plain HTTP file access: ``GET``/``HEAD`` (Range, ETag = sha256) and ``PUT`` of one attached file.

The plain-HTTP baselines the benchmarks compare the drive with, and the simplest
upload path. ``PUT`` runs through the same upload service as tus (staging,
whole-file sha256, atomic commit, version check), just in one request that is not
resumable; a body cut short commits nothing.
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from .. import protocol
from ..errors import InvalidInput, InvalidValue, NotFound
from . import access, deps, objects
from .byteranges import blob_response
from .compact_doc import compact_doc
from .models import FileEntry, User
from .deps import authenticate
from .http_uploads import append_chunk, upload_lock, upload_service
from .state import transaction

logger = logging.getLogger(__name__)

router = APIRouter(tags=["files"])
FILE_ROUTE = protocol.PATH_FILE.replace("{path}", "{path:path}")


def file_info(state: Any, user_id: int, oaio_id: str, path: str, compact: bool = False) -> dict[str, Any]:
    """The ``FileDoc`` of a readable attached file plus its ``blob_key`` (404 for folders); with
    ``compact`` and the object unchanged since the file's commit, ``object``: that commit's CompactDoc."""
    path = protocol.normalize_file_path(path)
    with transaction(state) as db:
        return _file_info(db, db.get_one(User, user_id), oaio_id, path, compact)


def authenticated_file_info(state: Any, request: Request, oaio_id: str, path: str,
                            compact: bool = False) -> dict[str, Any]:
    """:func:`file_info` for the request's caller, authenticated in the same session (one thread hop)."""
    with transaction(state) as db:
        user = deps.get_current_user(request, db)
        return _file_info(db, user, oaio_id, protocol.normalize_file_path(path), compact)


def _file_info(db: Any, user: User, oaio_id: str, path: str, compact: bool = False) -> dict[str, Any]:
    obj, right = access.load_object(db, user, oaio_id, "read")
    entry = db.scalar(select(FileEntry).where(FileEntry.object_id == obj.id,
                                              FileEntry.path_hash == objects.path_hash(path)))
    if entry is None or entry.kind != "file" or not entry.blob_key:
        raise NotFound(f"no file {path!r} in object {oaio_id!r}", {"oaio_id": oaio_id, "path": path})
    info = dict(objects.file_doc(entry), blob_key=entry.blob_key)
    if compact and entry.version == obj.version:     # nothing changed since: the last change was this commit
        info["object"] = compact_doc(obj, right, [entry])
    return info


@router.get(protocol.PATH_FILE_INFO.replace("{path}", "{path:path}"))
async def get_file_info(oaio_id: str, path: str, request: Request, compact: bool = False) -> dict[str, Any]:
    """The ``FileDoc`` of one attached file (404 for folders and links). ``compact``: plus ``object``,
    the CompactDoc of the file's commit while the object has not changed since: what a tus upload's
    answer (a version in headers) lacks for a client to update its copy of the object (issue 16)."""
    info = await run_in_threadpool(authenticated_file_info, upload_service(request).state, request, oaio_id,
                                   path, compact)
    info.pop("blob_key")
    return info


@router.api_route(FILE_ROUTE, methods=["GET", "HEAD"], response_class=Response)
async def get_file(oaio_id: str, path: str, request: Request) -> Response:
    """The bytes of one attached file (``Range: bytes=a-b`` answers 206)."""
    service = upload_service(request)
    info = await run_in_threadpool(authenticated_file_info, service.state, request, oaio_id, path)
    return blob_response(request, service.blobs, info)


@router.put(FILE_ROUTE)
async def put_file(oaio_id: str, path: str, request: Request, base_version: int | None = None,
                   mtime: float | None = None, mtime_ns: int | None = None,
                   mode: str | None = None, compact: bool = False) -> dict[str, Any]:
    """Store the body as the new version of the file (``X-OAIO-Sha256`` checks it end to end);
    ``compact``: the answer's ``object`` is the commit's CompactDoc (absent if the object moved on)."""
    length = request.headers.get("content-length")
    if not length or not (length.isascii() and length.isdigit()):
        raise InvalidInput("Content-Length is required for a plain upload (use tus for streams)",
                           http_status=411, code="length_required")
    if base_version is not None and base_version < 0:
        raise InvalidValue("base_version must not be negative")
    metadata = {protocol.META_OAIO_ID: oaio_id, protocol.META_PATH: path}
    if base_version is not None:
        metadata[protocol.META_BASE_VERSION] = str(base_version)
    if mtime is not None:
        metadata[protocol.META_MTIME] = repr(protocol.parse_finite_float(mtime, "mtime"))
    if mtime_ns is not None:
        metadata[protocol.META_MTIME_NS] = str(protocol.validate_mtime_ns(mtime_ns))
    if mode is not None:
        metadata[protocol.META_MODE] = str(protocol.validate_mode(mode))
    if request.headers.get(protocol.HEADER_SHA256):
        metadata[protocol.META_SHA256] = request.headers[protocol.HEADER_SHA256]
    service = upload_service(request)
    user_id = await run_in_threadpool(authenticate, request)
    upload = await run_in_threadpool(service.create, user_id, int(length), metadata)
    try:
        async with upload_lock(upload.id):
            upload, result = await append_chunk(service, request, user_id, upload, 0, None)
    except BaseException:
        await run_in_threadpool(service.discard, upload.id)
        raise
    if result is None:
        await run_in_threadpool(service.discard, upload.id)
        raise InvalidInput("the body ended before Content-Length bytes; nothing was stored",
                           {"received": upload.offset, "length": int(length)})
    await run_in_threadpool(service.discard, upload.id)     # the file is committed; the record is spent
    info = await run_in_threadpool(file_info, service.state, user_id, oaio_id, path, compact)
    info.pop("blob_key")
    return info

