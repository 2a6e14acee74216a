"""HTTP Range support for responses built from byte iterators (blobs, virtual tars).

Local blobs are answered with Starlette's ``FileResponse`` (it handles Range
itself); everything else goes through :func:`ranged_response`, which answers a
single ``bytes=`` range with 206, an unsatisfiable one with 416, and anything it
does not support (multiple ranges) with the whole body, as RFC 9110 allows.
:func:`blob_response` serves one stored blob with its validators (ETag, Last-Modified,
version) for every router that hands out file bytes (files, history, carts, compat).
"""
from __future__ import annotations

import email.utils
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from fastapi import Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from .. import protocol

_RANGE_RE = re.compile(r"^bytes=([0-9]{0,20})-([0-9]{0,20})$")   # ASCII digits only
FILE_CHUNK = 1 << 20                 # FileResponse piece size (Starlette's default is 64 KiB)


class RangeNotSatisfiable(Exception):
    """The Range header names no byte of the body."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single-range ``Range`` header, or None for "whole body"."""
    if not header:
        return None
    match = _RANGE_RE.match(header.strip())
    if not match:
        return None                  # multiple or foreign ranges: answer the whole body
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:                    # suffix range: the last N bytes
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable()
        return max(0, size - length), size
    start = int(first)
    end = size if not last else min(size, int(last) + 1)
    if start >= size or start >= end:
        raise RangeNotSatisfiable()
    return start, end


class _BigChunkFileResponse(FileResponse):
    chunk_size = FILE_CHUNK


def file_response(path: Path, headers: Mapping[str, str], media_type: str = "application/octet-stream",
                  filename: str | None = None) -> Response:
    """Serve a local file (Range, HEAD and If-Range handled by Starlette) in 1 MiB pieces."""
    return _BigChunkFileResponse(path, headers=dict(headers), media_type=media_type, filename=filename,
                                 content_disposition_type="attachment")


def ranged_response(request: Request, size: int, open_range: Callable[[int, int], Iterator[bytes]],
                    headers: Mapping[str, str], media_type: str = "application/octet-stream") -> Response:
    """Answer GET/HEAD for a body of ``size`` bytes whose slices ``open_range(start, end)`` yields."""
    out = dict(headers)
    out["Accept-Ranges"] = "bytes"
    if_range = request.headers.get("if-range")
    range_header = request.headers.get("range")
    if if_range and if_range != out.get("ETag"):
        range_header = None
    try:
        span = parse_range(range_header, size)
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    status = 200
    start, end = 0, size
    if span is not None:
        start, end = span
        status = 206
        out["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    out["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=out, media_type=media_type)
    return StreamingResponse(open_range(start, end), status_code=status, headers=out, media_type=media_type)


def blob_response(request: Request, blobs: Any, info: dict[str, Any], filename: str | None = None) -> Response:
    """Serve a pinned blob with validators (ETag, Last-Modified, version) and Range support."""
    headers = {"ETag": f'"{info["sha256"]}"', protocol.HEADER_VERSION: str(info["version"]),
               protocol.HEADER_SHA256: info["sha256"] or "",
               "Last-Modified": email.utils.formatdate(info["mtime"] or 0, usegmt=True)}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and headers["ETag"] in [tag.strip() for tag in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers)
    local = blobs.local_path(info["blob_key"])
    if local is not None:
        return file_response(local, headers, filename=filename)
    return ranged_response(request, info["size"],
                           lambda start, end: blobs.open_range(info["blob_key"], start, end), headers)
