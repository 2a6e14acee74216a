"""``TusUploader``: chunked, resumable uploads to the server's tus 1.0 endpoint.

The upload URL is handed to ``on_url`` before the first byte is sent, so a caller
that persists it can resume from another process after a crash
(``upload_file(..., url=saved)``); the uploader then asks the server for its
offset and sends only the rest. The whole file's sha256 travels in the metadata and
the server verifies it before committing anything. A first, uninterrupted attempt
(and the tail of a deferred-length upload streamed while the file was written)
streams each chunk straight from the file without a per-chunk checksum (a cut
connection keeps the bytes that arrived, so resuming stays byte-exact); once an
attempt failed or was interrupted, every further chunk carries a sha256
``Upload-Checksum`` so a damaged chunk is refused instead of spoiling the file. A
whole-file mismatch after checksum-less chunks is retried once from scratch with
checksums. Transient failures (connection errors, 5xx, a chunk checksum mismatch,
an offset race) are retried with capped exponential backoff, re-reading the
server's offset.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import random
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from .. import protocol
from ..hashing import file_sha256
from ..errors import (ChecksumMismatch, Gone, InvalidValue, NotFound, OaioError, OffsetMismatch, Unavailable,
                      VersionConflict)
from .api import ApiClient

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]      # (bytes the server has, total)
_TUS = {"Tus-Resumable": protocol.TUS_VERSION}
SEND_PIECE = 1 << 20                                # bytes handed to the socket per read of a streamed chunk
UPLOAD_CHUNK_SIZE = 16 * protocol.CHUNK_UNIT        # 20 MiB: fewer round trips and progress saves per file


def check_chunk_size(chunk_size: int) -> int:
    """Return ``chunk_size`` if it is a positive multiple of 1280 KiB (``protocol.CHUNK_UNIT``)."""
    if not isinstance(chunk_size, int) or chunk_size <= 0 or chunk_size % protocol.CHUNK_UNIT:
        raise InvalidValue(f"chunk size must be a positive multiple of {protocol.CHUNK_UNIT} bytes (1280 KiB), "
                           f"got {chunk_size!r}", {"chunk_size": chunk_size, "unit": protocol.CHUNK_UNIT})
    return chunk_size


class UploadState(dict[str, Any]):
    """What ``HEAD`` of an upload says: ``offset``, ``length`` and, once complete, ``version``/``sha256``."""


class TusUploader:
    """Uploads files in chunks through one :class:`ApiClient` (several threads may share one)."""

    def __init__(self, api: ApiClient, chunk_size: int = UPLOAD_CHUNK_SIZE, max_attempts: int = 8,
                 backoff_cap_s: float = 30.0, backoff_base_s: float = 0.25) -> None:
        self.api = api
        self.chunk_size = check_chunk_size(chunk_size)
        self.max_attempts = max_attempts
        self.backoff_cap_s = backoff_cap_s
        self.backoff_base_s = backoff_base_s
        self.bytes_sent = 0                 # request body bytes sent by this uploader (for tests/stats)

    # --- single tus calls ---
    def path_of(self, url: str) -> str:
        """The API path of an upload URL (absolute URLs of another base keep only their path)."""
        if url.startswith(self.api.base_url):
            return url[len(self.api.base_url):]
        return urlsplit(url).path

    def create(self, oaio_id: str, path: str, size: int | None, *, sha256: str | None = None,
               base_version: int | None = None, mtime: float | None = None, mtime_ns: int | None = None,
               mode: int | None = None) -> str:
        """Open an upload (rights and a stale ``base_version`` are checked now); returns its URL.

        ``size`` None defers the length (tus ``creation-defer-length``): a later PATCH
        fixes it, so nothing can be committed before that.
        """
        meta = {protocol.META_OAIO_ID: oaio_id, protocol.META_PATH: path}
        if base_version is not None:
            meta[protocol.META_BASE_VERSION] = str(base_version)
        if sha256:
            meta[protocol.META_SHA256] = sha256
        if mtime is not None:
            meta[protocol.META_MTIME] = repr(float(mtime))
        if mtime_ns is not None:
            meta[protocol.META_MTIME_NS] = str(int(mtime_ns))
        if mode is not None:
            meta[protocol.META_MODE] = str(int(mode))
        headers = dict(_TUS, **{"Upload-Metadata": protocol.encode_upload_metadata(meta)})
        if size is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(size)
        resp = self.api.request("POST", protocol.PATH_UPLOADS, headers=headers, expect=(201,))
        resp.close()
        location = resp.headers["Location"]
        return self.api.url(location) if location.startswith("/") else location

    def status(self, url: str) -> UploadState:
        """The server's view of an upload (``NotFound``/``Gone`` once it was purged or finished long ago)."""
        resp = self.api.request("HEAD", self.path_of(url), headers=_TUS, expect=(200,))
        state = UploadState(offset=int(resp.headers["Upload-Offset"]),
                            length=int(resp.headers.get("Upload-Length", -1)),
                            deferred=resp.headers.get("Upload-Defer-Length") == "1")
        state.update(_result(resp.headers) or {})
        return state

    def offset(self, url: str) -> int:
        """How many bytes the server has."""
        return int(self.status(url)["offset"])

    def cancel(self, url: str) -> None:
        """Terminate an upload (already gone is fine)."""
        try:
            self.api.request("DELETE", self.path_of(url), headers=_TUS, expect=(204,)).close()
        except (NotFound, Gone):
            pass

    def send_range(self, url: str, fd: int, offset: int, length: int) -> int:
        """PATCH ``length`` bytes of the open file ``fd`` from ``offset``, streamed without a chunk
        checksum (for an upload whose whole-file sha256 is announced later); returns the new offset."""
        new_offset, _result = self.send_chunk(url, offset, _FileSlice(fd, offset, length), checksum=False)
        return new_offset

    def send_chunk(self, url: str, offset: int, data: "bytes | _FileSlice",
                   digest: str | None = None, *, checksum: bool = True, length: int | None = None,
                   sha256: str | None = None) -> tuple[int, dict[str, Any] | None]:
        """PATCH ``data`` at ``offset``; returns (new offset, result if this completed the upload).

        ``data`` is bytes or a :class:`_FileSlice` streamed from the file. With
        ``checksum`` (the default) the chunk carries its sha256 (``digest`` or computed
        here from bytes); without, the server relies on the whole-file sha256. ``length`` (and
        ``sha256``) fix a deferred upload's length (and announce the whole file's sha256).
        """
        headers = dict(_TUS, **{"Upload-Offset": str(offset), "Content-Type": protocol.TUS_CONTENT_TYPE})
        if length is not None:
            headers["Upload-Length"] = str(length)
            if sha256:
                headers[protocol.HEADER_SHA256] = sha256
        if checksum:
            if digest is None:
                if not isinstance(data, bytes):
                    raise InvalidValue("a streamed chunk needs its digest to carry a checksum")
                digest = _b64_sha256(data)
            headers["Upload-Checksum"] = f"sha256 {digest}"
        self.bytes_sent += len(data)
        resp = self.api.request("PATCH", self.path_of(url), data=data, headers=headers, expect=(204,))
        resp.close()
        return int(resp.headers["Upload-Offset"]), _result(resp.headers)

    # --- the whole file ---
    def upload_file(self, local_path: str | os.PathLike[str], oaio_id: str, path: str, *, url: str | None = None,
                    sha256: str | None = None, base_version: int | None = None, mtime: float | None = None,
                    on_url: Callable[[str], None] | None = None,
                    on_progress: ProgressCallback | None = None, mtime_ns: int | None = None,
                    mode: int | None = None) -> dict[str, Any]:
        """Upload ``local_path`` as ``path`` of ``oaio_id``; returns ``{"version", "sha256", "size"}``.

        With ``url`` (persisted from an earlier ``on_url``, or a deferred-length upload
        streamed while the file was written) the upload resumes at the server's
        offset; an upload the server no longer knows is started afresh.
        Raises ``VersionConflict``, ``Forbidden``, ``NotFound``, ``ChecksumMismatch``
        (the file changed while uploading) or ``Unavailable`` after ``max_attempts``.
        """
        local_path = Path(local_path)
        size = local_path.stat().st_size
        sha256 = sha256 or file_sha256(local_path)
        if mtime is None and mtime_ns is None:
            mtime_ns = local_path.stat().st_mtime_ns
        if mtime is None and mtime_ns is not None:
            mtime = mtime_ns / 1e9
        offset = 0
        resumed = url is not None               # an earlier attempt was interrupted: checksum every chunk
        fix_length = False                      # the upload's length is deferred: the PATCHes fix it
        if url is not None:
            try:
                state = self.status(url)
            except (NotFound, Gone):
                log.info("upload %s is gone on the server; starting over", url)
                url = None
            else:
                if "version" in state and state["sha256"] == sha256:
                    return _summary(state, size)        # it completed; only the answer was lost
                if state["deferred"] and state["offset"] <= size and "version" not in state:
                    # streamed while the file was written (no attempt of ours failed yet): send the
                    # tail like a first attempt; the length and whole-file sha256 go with it
                    offset, fix_length, resumed = state["offset"], True, False
                elif "version" in state or state["length"] != size:
                    log.info("upload %s was for other bytes than %s has now; starting over", url, local_path)
                    self.cancel(url)
                    url = None
                else:
                    offset = state["offset"]
        for fresh_attempt in (1, 2):
            if url is None:
                url = self.create(oaio_id, path, size, sha256=sha256, base_version=base_version, mtime=mtime,
                                  mtime_ns=mtime_ns, mode=mode)
                if on_url is not None:
                    on_url(url)
            with open(local_path, "rb") as handle, ThreadPoolExecutor(1, thread_name_prefix="tus-read") as pool:
                source = _ChunkSource(handle.fileno(), size, self.chunk_size, pool, checksums=resumed)
                if fix_length:
                    source.final = (size, sha256)
                try:
                    return self._send_from(source, url, offset, size, on_progress)
                except ChecksumMismatch:
                    if source.checksums or fresh_attempt == 2:
                        raise
                    # checksum-less chunks did not add up to the announced file: the server
                    # dropped the upload; start once more, refusing any damaged chunk this time
                    log.info("%s: whole-file sha256 mismatch; uploading again with chunk checksums", local_path)
            url, offset, resumed, fix_length = None, 0, True, False
        raise AssertionError("unreachable")

    def _send_from(self, source: "_ChunkSource", url: str, offset: int, size: int,
                   on_progress: ProgressCallback | None) -> dict[str, Any]:
        failures = 0
        if on_progress is not None:
            on_progress(offset, size)
        while True:
            try:
                data, digest = source.chunk_at(offset)
                length, whole_sha256 = source.final or (None, None)
                new_offset, result = self.send_chunk(url, offset, data, digest, checksum=source.checksums,
                                                     length=length, sha256=whole_sha256)
            except (VersionConflict, ChecksumMismatch) as exc:
                if isinstance(exc, ChecksumMismatch) and self._still_open(url):
                    source.checksums = True
                    failures = self._backoff(failures, exc)   # a chunk was damaged in transit: resend
                    offset = self.offset(url)
                    continue
                raise
            except (Unavailable, OffsetMismatch) as exc:
                source.checksums = True
                failures = self._backoff(failures, exc)
                offset = self._offset_after_failure(url, exc)
                continue
            except OaioError as exc:
                if exc.http_status >= 500:
                    source.checksums = True
                    failures = self._backoff(failures, exc)
                    offset = self._offset_after_failure(url, exc)
                    continue
                raise
            if new_offset > offset:
                failures = 0
            offset = new_offset
            if on_progress is not None:
                on_progress(offset, size)
            if result is not None:
                return _summary(result, size)
            if offset >= size:
                raise OaioError("the server has every byte but did not report the committed version",
                                {"url": url})

    def _still_open(self, url: str) -> bool:
        try:
            self.status(url)
            return True
        except (NotFound, Gone):
            return False

    def _offset_after_failure(self, url: str, exc: OaioError) -> int:
        """Ask the server where to continue (retrying while it is unreachable)."""
        failures = 0
        while True:
            try:
                state = self.status(url)
                return int(state["offset"])
            except Unavailable as again:
                failures = self._backoff(failures, again)

    def _backoff(self, failures: int, exc: OaioError) -> int:
        failures += 1
        if failures >= self.max_attempts:
            raise exc
        delay = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
        log.info("upload attempt failed (%s); retrying in %.2fs", exc, delay)
        time.sleep(delay)
        return failures


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


class _FileSlice:
    """A bounded, rewindable view of ``[offset, offset + length)`` of an open file, read as a request body.

    ``read`` hands out up to :data:`SEND_PIECE` bytes at a time whatever size is
    asked for (fewer, larger socket writes); ``len`` is the slice's length, so
    ``requests`` sends a ``Content-Length``.
    """

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self.fd, self.offset, self.length = fd, offset, length
        self.position = 0

    def __len__(self) -> int:
        return self.length

    def tell(self) -> int:
        return self.position

    def seek(self, position: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.length}[whence]
        self.position = max(0, min(self.length, base + position))
        return self.position

    def read(self, size: int = -1) -> bytes:
        want = self.length - self.position
        if size is not None and size >= 0:
            want = min(want, max(size, SEND_PIECE))
        if want <= 0:
            return b""
        data = os.pread(self.fd, want, self.offset + self.position)
        self.position += len(data)
        return data


class _ChunkSource:
    """Hands out the chunks of a file: streamed slices, or (with ``checksums``) bytes + sha256.

    Checksummed chunks are read and hashed in the background, the next one while
    one is sent.
    """

    def __init__(self, fd: int, size: int, chunk_size: int, pool: ThreadPoolExecutor,
                 checksums: bool = True) -> None:
        self.fd, self.size, self.chunk_size, self.pool = fd, size, chunk_size, pool
        self.checksums = checksums
        self.final: tuple[int, str] | None = None     # (length, sha256) to fix a deferred upload with
        self._next: tuple[int, Future[tuple[bytes, str]]] | None = None

    def _read(self, offset: int) -> tuple[bytes, str]:
        data = os.pread(self.fd, min(self.chunk_size, self.size - offset), offset)
        return data, _b64_sha256(data)

    def chunk_at(self, offset: int) -> tuple["bytes | _FileSlice", str | None]:
        """The chunk starting at ``offset`` and its base64 sha256 (None for a streamed slice)."""
        if not self.checksums:
            return _FileSlice(self.fd, offset, min(self.chunk_size, self.size - offset)), None
        if self._next is not None and self._next[0] == offset:
            data, digest = self._next[1].result()
        else:
            data, digest = self._read(offset)
        following = offset + len(data)
        self._next = (following, self.pool.submit(self._read, following)) if following < self.size else None
        return data, digest


def _result(headers: Any) -> dict[str, Any] | None:
    version = headers.get(protocol.HEADER_UPLOAD_RESULT_VERSION)
    if version is None:
        return None
    return {"version": int(version), "sha256": headers.get(protocol.HEADER_UPLOAD_RESULT_SHA256)}


def _summary(result: dict[str, Any], size: int) -> dict[str, Any]:
    return {"version": result["version"], "sha256": result["sha256"], "size": size}
