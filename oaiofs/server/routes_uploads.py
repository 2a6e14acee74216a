"""tus 1.0 resumable uploads at ``/api/v1/uploads/``: core, creation, creation-with-upload,
checksum, termination and expiration (the HTTP layer over :mod:`oaiofs.server.upload_service`).

``Upload-Metadata`` names the target (``oaio_id``, ``path``) and may carry
``base_version``, ``sha256`` and ``mtime``; rights and a stale base version are
checked at creation and again at commit. An upload URL is bound to its creator
(others get 404). The final 204, and HEAD of a completed upload, carry
``X-OAIO-Version``/``X-OAIO-Sha256`` so a client whose last answer was lost can
learn the result.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from .. import protocol
from ..errors import InvalidInput, OffsetMismatch, PreconditionFailed, UnsupportedMediaType
from . import routes_uploads_ietf
from .db import aware
from .deps import authenticate
from .state import get_state
from .http_uploads import append_chunk, authenticated_upload, upload_lock, upload_service
from .upload_service import CHUNK_HASHERS, UploadView

router = APIRouter(tags=["uploads"])


def http_date(value: dt.datetime) -> str:
    """RFC 9110 date for ``Upload-Expires``."""
    return email.utils.format_datetime(aware(value).astimezone(dt.timezone.utc), usegmt=True)


def _int_header(request: Request, name: str, *, required: bool) -> int | None:
    raw = request.headers.get(name)
    if raw is None:
        if required:
            raise InvalidInput(f"missing {name} header")
        return None
    return protocol.parse_ascii_int(raw, name)


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    """``Upload-Checksum: <algorithm> <base64 digest>`` -> (algorithm, digest); 400 if malformed."""
    if not header:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in protocol.TUS_CHECKSUM_ALGORITHMS:
        raise InvalidInput(f"unsupported checksum algorithm {algorithm!r}",
                           {"supported": list(protocol.TUS_CHECKSUM_ALGORITHMS)})
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise InvalidInput("Upload-Checksum digest is not base64") from None
    if len(digest) != CHUNK_HASHERS[algorithm]().digest_size:
        raise InvalidInput("Upload-Checksum digest has the wrong length")
    return algorithm, digest


def _check_tus_version(request: Request) -> None:
    version = request.headers.get("tus-resumable")
    if version != protocol.TUS_VERSION:
        err = PreconditionFailed(f"Tus-Resumable {protocol.TUS_VERSION} required",
                                 {"supported": protocol.TUS_VERSION})
        err.headers = {"Tus-Version": protocol.TUS_VERSION}  # type: ignore[attr-defined]
        raise err


def _check_content_type(request: Request) -> None:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != protocol.TUS_CONTENT_TYPE:
        raise UnsupportedMediaType(f"Content-Type must be {protocol.TUS_CONTENT_TYPE}")


def upload_headers(upload: UploadView, result: dict[str, Any] | None = None) -> dict[str, str]:
    """Headers describing an upload's progress (and its result once complete)."""
    headers = {"Tus-Resumable": protocol.TUS_VERSION, "Upload-Offset": str(upload.offset),
               "Upload-Expires": http_date(upload.expires), "Cache-Control": "no-store"}
    result = result or (upload.result if upload.completed else None)
    if result and "version" in result:
        headers[protocol.HEADER_UPLOAD_RESULT_VERSION] = str(result["version"])
        headers[protocol.HEADER_UPLOAD_RESULT_SHA256] = result["sha256"]
    return headers


@router.options(protocol.PATH_UPLOADS)
@router.options(protocol.PATH_UPLOADS + "{upload_id}")
async def tus_options(request: Request) -> Response:
    """tus discovery: version, extensions, checksum algorithms, maximum size."""
    settings = get_state(request).settings
    return Response(status_code=204, headers={
        "Tus-Resumable": protocol.TUS_VERSION, "Tus-Version": protocol.TUS_VERSION,
        "Tus-Extension": ",".join(protocol.TUS_EXTENSIONS),
        "Tus-Checksum-Algorithm": ",".join(protocol.TUS_CHECKSUM_ALGORITHMS),
        "Tus-Max-Size": str(settings.max_upload_bytes)})


@router.post(protocol.PATH_UPLOADS, status_code=201)
async def tus_create(request: Request) -> Response:
    """Creation (and creation-with-upload when the request has a body)."""
    if routes_uploads_ietf.is_ietf(request):              # IETF resumable uploads (draft interop 5/6)
        return await routes_uploads_ietf.create(request)
    _check_tus_version(request)
    deferred = request.headers.get("upload-defer-length")
    if deferred is not None:
        if deferred.strip() != "1":
            raise InvalidInput("Upload-Defer-Length must be 1")
        if request.headers.get("upload-length") is not None:
            raise InvalidInput("send either Upload-Length or Upload-Defer-Length, not both")
    length = None if deferred is not None else _int_header(request, "upload-length", required=True)
    metadata = protocol.decode_upload_metadata(request.headers.get("upload-metadata"))
    checksum = parse_checksum(request.headers.get("upload-checksum"))
    service = upload_service(request)
    user_id = await run_in_threadpool(authenticate, request)
    upload = await run_in_threadpool(service.create, user_id, length, metadata)
    location = protocol.PATH_UPLOADS + upload.id
    with_upload = request.headers.get("content-type", "").startswith(protocol.TUS_CONTENT_TYPE)
    result = None
    if with_upload or length == 0:
        async with upload_lock(upload.id):
            upload, result = await append_chunk(service, request, user_id, upload, 0, checksum)
    headers = upload_headers(upload, result)
    headers["Location"] = location
    return Response(status_code=201, headers=headers)


@router.head(protocol.PATH_UPLOADS + "{upload_id}")
async def tus_head(upload_id: str, request: Request) -> Response:
    """The upload's offset, length and metadata (and its result once complete)."""
    if routes_uploads_ietf.is_ietf(request):
        return await routes_uploads_ietf.head(upload_id, request)
    service = upload_service(request)
    _user_id, upload = await run_in_threadpool(authenticated_upload, service, request, upload_id)
    headers = upload_headers(upload)
    if upload.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(upload.length)
    if upload.metadata:
        headers["Upload-Metadata"] = protocol.encode_upload_metadata(upload.metadata)
    return Response(status_code=200, headers=headers)


@router.patch(protocol.PATH_UPLOADS + "{upload_id}")
async def tus_patch(upload_id: str, request: Request) -> Response:
    """Append a chunk at ``Upload-Offset`` (idempotent for ranges already received).

    An ``Upload-Length`` header fixes a deferred length (``X-OAIO-Sha256`` may then
    announce the whole file's sha256, if the creation did not).
    """
    if routes_uploads_ietf.is_ietf(request):
        return await routes_uploads_ietf.patch(upload_id, request)
    _check_tus_version(request)
    _check_content_type(request)
    start = _int_header(request, "upload-offset", required=True) or 0
    length = _int_header(request, "upload-length", required=False)
    checksum = parse_checksum(request.headers.get("upload-checksum"))
    service = upload_service(request)
    async with upload_lock(upload_id):
        user_id, upload = await run_in_threadpool(authenticated_upload, service, request, upload_id)
        result = None
        if length is not None and not upload.completed:
            upload = await run_in_threadpool(service.fix_length, upload, length,
                                             request.headers.get(protocol.HEADER_SHA256))
        if upload.completed:
            if start > (upload.length or 0):
                raise OffsetMismatch("the upload is complete", {"offset": upload.offset})
        else:
            upload, result = await append_chunk(service, request, user_id, upload, start, checksum)
    return Response(status_code=204, headers=upload_headers(upload, result))


@router.delete(protocol.PATH_UPLOADS + "{upload_id}")
async def tus_delete(upload_id: str, request: Request) -> Response:
    """Termination: drop the upload and its staged bytes (a committed file stays)."""
    service = upload_service(request)
    async with upload_lock(upload_id):
        await run_in_threadpool(authenticated_upload, service, request, upload_id)
        await run_in_threadpool(service.discard, upload_id)
    return Response(status_code=204, headers={"Tus-Resumable": protocol.TUS_VERSION})

