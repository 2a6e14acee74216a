"""Request glue of the upload routers (tus, IETF resumable uploads, plain ``PUT``): the upload service of a
request's app, the caller's upload, one request at a time per upload, and streaming a request body into an
upload's staging area (completing the upload on its last byte).

The rules (records, staging, verification, the commit) are :mod:`oaiofs.server.upload_service`; this module
only moves HTTP bodies into it.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any, AsyncIterator

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ..errors import OffsetMismatch, TooLarge
from . import deps
from .state import transaction, transfer_state
from .upload_service import ChunkWriter, UploadService, UploadView

logger = logging.getLogger(__name__)

_LOCKS: "weakref.WeakValueDictionary[str, asyncio.Lock]" = weakref.WeakValueDictionary()


@contextlib.asynccontextmanager
async def upload_lock(upload_id: str) -> AsyncIterator[None]:
    """One request at a time per upload in this process (the database guards across processes)."""
    lock = _LOCKS.get(upload_id)
    if lock is None:
        lock = _LOCKS[upload_id] = asyncio.Lock()
    async with lock:
        yield


async def receive_chunk(service: UploadService, request: Request, upload: UploadView, start: int,
                        checksum: tuple[str, bytes] | None) -> UploadView:
    """Stream the request body into ``upload`` from offset ``start``; returns the updated upload.

    A cut connection keeps what arrived when there is no checksum to verify (the
    caller then answers a client that is no longer listening).
    """
    if start > upload.offset:
        raise OffsetMismatch(f"Upload-Offset {start} is past the received offset {upload.offset}",
                             {"offset": upload.offset})
    limit = service.limit(upload)
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and start + int(declared) > limit:
        raise TooLarge("the chunk goes past Upload-Length (or the maximum upload size)", {"upload_length": limit})
    writer = ChunkWriter(service.blobs, upload, start, checksum, limit)
    writing: asyncio.Future[None] | None = None       # receiving the next piece overlaps this write
    try:
        async for piece in request.stream():
            if piece and writer.feed(piece):
                data = writer.take()
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(run_in_threadpool(writer.write, data))
    except ClientDisconnect:
        if writing is not None:
            await writing
        if checksum is not None:
            logger.info("upload %s: connection cut, chunk with checksum dropped", upload.id)
            return upload
        await run_in_threadpool(writer.flush)
        if writer.written_to == upload.offset:
            return upload
        view = await run_in_threadpool(service.save_progress, writer)
        logger.info("upload %s: connection cut, kept %d bytes", upload.id, view.offset)
        return view
    except BaseException:
        if writing is not None:
            await asyncio.wait([writing])         # never leave a write running behind an error
        raise
    if writing is not None:
        await writing
    await run_in_threadpool(writer.flush)
    writer.verify()
    if writer.written_to == upload.offset:
        return upload                        # nothing new (a re-sent range or an empty body)
    return await run_in_threadpool(service.save_progress, writer)


def upload_service(request: Request) -> UploadService:
    """The upload service of this request's app."""
    return UploadService(transfer_state(request))


def authenticated_upload(service: UploadService, request: Request, upload_id: str) -> tuple[int, UploadView]:
    """(caller's user id, the caller's upload ``upload_id``) in one session: one thread hop per request."""
    with transaction(service.state) as db:
        user_id = deps.get_current_user(request, db).id
        view = service.view_of(db, user_id, upload_id)
    return user_id, service.unexpired(view)


async def append_chunk(service: UploadService, request: Request, user_id: int, upload: UploadView,
                  start: int, checksum: tuple[str, bytes] | None) -> tuple[UploadView, dict[str, Any] | None]:
    """Receive a chunk and complete the upload when its last byte is in."""
    upload = await receive_chunk(service, request, upload, start, checksum)
    result = None
    if upload.length is not None and upload.offset == upload.length:
        result = await run_in_threadpool(service.complete, user_id, upload)
        upload.completed, upload.result = True, result
    return upload, result
