"""Blob storage: content-addressed final blobs plus a staging area for uploads in progress.

Final blobs are immutable and named by the sha256 of their bytes
(:func:`blob_key`), so equal content is stored once and a blob never changes
under a reader. Uploads are written into a staging area keyed by upload id and
moved into place with :meth:`BlobStore.staging_commit` (an atomic rename on the
local store; never delete-then-rename).

``state`` is a JSON-able dict the store may use to remember staging details
between calls and processes (e.g. S3 multipart parts); the caller keeps it in
``Upload.staging_json`` and passes back what the previous call returned.
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Iterator, Protocol, runtime_checkable

from ...errors import InvalidValue

READ_CHUNK = 1 << 20                 # bytes per piece when streaming a blob
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_UPLOAD_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_KEY_RE = re.compile(r"^sha256/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}$")


def blob_key(sha256: str) -> str:
    """The store key of the blob whose bytes hash to ``sha256`` (``sha256/ab/cd/abcd…``)."""
    if not isinstance(sha256, str) or not _SHA256_RE.match(sha256):
        raise InvalidValue("sha256 must be 64 lower-case hex digits")
    return f"sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def check_key(key: str) -> str:
    """Return ``key`` if it is a well-formed blob key (path-traversal proof), else raise."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise InvalidValue("malformed blob key", {"key": str(key)[:100]})
    return key


def check_upload_id(upload_id: str) -> str:
    """Return ``upload_id`` if it is safe as a staging name, else raise ``InvalidValue``."""
    if not isinstance(upload_id, str) or not _UPLOAD_ID_RE.match(upload_id):
        raise InvalidValue("malformed upload id")
    return upload_id


@runtime_checkable
class BlobStore(Protocol):
    """What the upload, file and cart services need from a blob backend."""

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes ``[start, end)`` of a blob (``end=None``: to its end), in pieces."""

    def local_path(self, key: str) -> Path | None:
        """A local file holding the blob (for sendfile-style responses), or None."""

    def exists(self, key: str) -> bool:
        """True if the blob is stored."""

    def size(self, key: str) -> int:
        """The blob's size in bytes (raises ``NotFound`` if missing)."""

    def delete(self, key: str) -> None:
        """Remove a blob (no error if missing)."""

    def staging_create(self, upload_id: str) -> dict[str, Any]:
        """Start an empty staging area; returns the initial state."""

    def staging_write(self, upload_id: str, offset: int, data: bytes, state: dict[str, Any]) -> dict[str, Any]:
        """Write ``data`` at ``offset`` (anything staged after it is dropped); returns the new state."""

    def staging_read(self, upload_id: str, state: dict[str, Any]) -> Iterator[bytes]:
        """The staged bytes from the start, in pieces."""

    def staging_commit(self, upload_id: str, key: str, state: dict[str, Any]) -> None:
        """Move the staged bytes to the final blob ``key`` atomically (dedupe if it exists).

        Idempotent: if the staging area is already gone but ``key`` exists, do nothing.
        """

    def staging_delete(self, upload_id: str, state: dict[str, Any]) -> None:
        """Drop a staging area (no error if missing)."""

    def staging_ids(self) -> list[str]:
        """Ids of every staging area present (for purging leftovers)."""

    def check_space(self, nbytes: int) -> None:
        """Raise ``InsufficientStorage`` (507) if ``nbytes`` more would not fit (no-op where unknown)."""

    def list_blobs(self) -> Iterator[tuple[str, float, int]]:
        """Every final blob as (key, last-modified epoch seconds, size), for garbage collection."""


def open_blob_store(url: str | None, data_dir: Path, s3_endpoint: str | None = None, *,
                    min_free_bytes: int = 0) -> BlobStore:
    """The blob store for ``url``: ``s3://bucket[/prefix]``, a folder path, or ``<data_dir>/blobs``.

    ``min_free_bytes`` (local stores): staging writes that would leave less free space on
    the blob folder's file system answer 507, so the database next to it can still write
    (value changes and deletes keep working on a full disk).
    """
    if url and url.startswith("s3://"):
        s3 = importlib.import_module(__name__ + ".s3")
        return s3.open_s3_store(url, endpoint=s3_endpoint)
    from .local import LocalBlobStore
    if url and url.startswith("file://"):
        url = url[len("file://"):]
    return LocalBlobStore(Path(url) if url else Path(data_dir) / "blobs", min_free_bytes=min_free_bytes)
