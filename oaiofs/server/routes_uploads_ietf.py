"""IETF "Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-upload, interop versions 5 and 6) at
``/api/v1/uploads/``, beside tus 1.0 on the same upload service (rights, offsets, whole-file sha256, commit).

A request is in this protocol when it carries ``Upload-Draft-Interop-Version``
(``5``: draft -03, ``6``: draft -05; what ``tus-js-client`` 4.x sends with
``protocol: 'ietf-draft-03'`` / ``'ietf-draft-05'``) instead of ``Tus-Resumable``.

* ``POST /uploads/`` creates an upload; ``Upload-Metadata`` names the target as
  for tus; ``Upload-Length`` is optional (``Upload-Complete: ?1`` with a body of
  known size fixes it); the body, if any, is the first part. 201 + ``Location``.
* ``HEAD /uploads/{id}``: 204 with ``Upload-Offset``, ``Upload-Complete`` (and
  ``Upload-Length`` when known).
* ``PATCH /uploads/{id}``: ``Upload-Offset`` + a part (``Content-Type``
  ``application/partial-upload``, the tus type, or none); ``Upload-Complete: ?1``
  marks the last part. A wrong offset is 409 with the server's ``Upload-Offset``.
* ``DELETE`` cancels (shared with tus). ``Upload-Incomplete`` (interop 3/4) is read
  as the inverse of ``Upload-Complete``.

Not done: ``104 Upload Resumption Supported`` informational responses (ASGI has no
way to send them); clients that need one to learn the URL must use ``Location``.
"""
from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from .. import protocol
from ..errors import InvalidInput, OaioError, OffsetMismatch, UnsupportedMediaType
from .deps import authenticate
from .http_uploads import append_chunk, authenticated_upload, upload_lock, upload_service
from .upload_service import UploadView

INTEROP_HEADER = "upload-draft-interop-version"
INTEROP_VERSIONS = ("5", "6")
PARTIAL_UPLOAD_TYPE = "application/partial-upload"
_PART_TYPES = ("", PARTIAL_UPLOAD_TYPE, protocol.TUS_CONTENT_TYPE, "application/octet-stream")


def is_ietf(request: Request) -> bool:
    """True if the request speaks the IETF draft (has ``Upload-Draft-Interop-Version``)."""
    return INTEROP_HEADER in request.headers


def _version(request: Request) -> str:
    version = request.headers.get(INTEROP_HEADER, "").strip()
    if version not in INTEROP_VERSIONS:
        raise InvalidInput(f"Upload-Draft-Interop-Version {version[:10]!r} is not supported",
                           {"supported": list(INTEROP_VERSIONS)})
    return version


def _sf_bool(raw: str | None, name: str) -> bool | None:
    if raw is None:
        return None
    raw = raw.strip()
    if raw not in ("?0", "?1"):
        raise InvalidInput(f"{name} must be a structured boolean ?0 or ?1", {name: raw[:10]})
    return raw == "?1"


def _complete_flag(request: Request) -> bool | None:
    complete = _sf_bool(request.headers.get("upload-complete"), "Upload-Complete")
    if complete is None:
        incomplete = _sf_bool(request.headers.get("upload-incomplete"), "Upload-Incomplete")
        complete = None if incomplete is None else not incomplete
    return complete


def _int(request: Request, name: str) -> int | None:
    raw = request.headers.get(name)
    if raw is None:
        return None
    return protocol.parse_ascii_int(raw, name)     # ASCII digits only ('²'.isdigit() is True)


def _check_part_type(request: Request) -> None:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in _PART_TYPES:
        raise UnsupportedMediaType(f"Content-Type of an upload part must be {PARTIAL_UPLOAD_TYPE}")


def _headers(version: str, upload: UploadView, result: dict[str, Any] | None = None) -> dict[str, str]:
    done = bool(result) or bool(upload.completed)
    headers = {"Upload-Draft-Interop-Version": version, "Upload-Offset": str(upload.offset),
               "Upload-Complete": "?1" if done else "?0", "Cache-Control": "no-store"}
    if upload.length is not None:
        headers["Upload-Length"] = str(upload.length)
    result = result or (upload.result if upload.completed else None)
    if result and "version" in result:
        headers[protocol.HEADER_UPLOAD_RESULT_VERSION] = str(result["version"])
        headers[protocol.HEADER_UPLOAD_RESULT_SHA256] = result["sha256"]
    return headers


def _with_offset(err: OaioError, version: str, offset: int | None) -> OaioError:
    if offset is not None:
        err.headers = {"Upload-Offset": str(offset), "Upload-Draft-Interop-Version": version}  # type: ignore[attr-defined]
    return err


async def _append(service: Any, request: Request, user_id: int, upload: UploadView, start: int,
                  complete: bool | None, version: str) -> tuple[UploadView, dict[str, Any] | None]:
    """Fix the length a final part implies, stream the part, commit when the last byte is in."""
    if start > upload.offset:           # before the length is fixed: a refused part changes nothing
        raise _with_offset(OffsetMismatch(f"Upload-Offset {start} is past the received offset {upload.offset}",
                                          {"offset": upload.offset}), version, upload.offset)
    body_length = _int(request, "content-length")
    if complete and upload.length is None and body_length is not None:
        upload = await run_in_threadpool(service.fix_length, upload, start + body_length, None)
    try:
        upload, result = await append_chunk(service, request, user_id, upload, start, None)
    except OffsetMismatch as err:
        raise _with_offset(err, version, (err.detail or {}).get("offset", upload.offset)) from None
    if result is None and complete and upload.length is None:        # a final part of unknown size
        upload = await run_in_threadpool(service.fix_length, upload, upload.offset, None)
        result = await run_in_threadpool(service.complete, user_id, upload)
    return upload, result


async def create(request: Request) -> Response:
    """``POST /uploads/``: create an upload, optionally with its first (or only) part."""
    version = _version(request)
    complete = _complete_flag(request)
    metadata = protocol.decode_upload_metadata(request.headers.get("upload-metadata"))
    length = _int(request, "upload-length")
    body_length = _int(request, "content-length")
    has_body = bool(body_length) or "chunked" in request.headers.get("transfer-encoding", "").lower()
    if has_body:
        _check_part_type(request)
    if length is None and complete and body_length is not None:
        length = body_length
    service = upload_service(request)
    user_id = await run_in_threadpool(authenticate, request)
    upload = await run_in_threadpool(service.create, user_id, length, metadata)
    result = None
    if has_body or length == 0:
        async with upload_lock(upload.id):
            upload, result = await _append(service, request, user_id, upload, 0, complete, version)
    headers = _headers(version, upload, result)
    headers["Location"] = protocol.PATH_UPLOADS + upload.id
    return Response(status_code=201, headers=headers)


async def head(upload_id: str, request: Request) -> Response:
    """``HEAD /uploads/{id}``: where to resume."""
    version = _version(request)
    _user_id, upload = await run_in_threadpool(authenticated_upload, upload_service(request), request, upload_id)
    return Response(status_code=204, headers=_headers(version, upload))


async def patch(upload_id: str, request: Request) -> Response:
    """``PATCH /uploads/{id}``: append a part at ``Upload-Offset``."""
    version = _version(request)
    _check_part_type(request)
    start = _int(request, "upload-offset")
    if start is None:
        raise InvalidInput("missing Upload-Offset header")
    complete = _complete_flag(request)
    service = upload_service(request)
    async with upload_lock(upload_id):
        user_id, upload = await run_in_threadpool(authenticated_upload, service, request, upload_id)
        result = None
        if upload.completed:
            if start != upload.offset:
                raise _with_offset(OffsetMismatch("the upload is complete", {"offset": upload.offset}), version,
                                   upload.offset)
        else:
            upload, result = await _append(service, request, user_id, upload, start, complete, version)
    return Response(status_code=204, headers=_headers(version, upload, result))
