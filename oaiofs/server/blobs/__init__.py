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
from pathlib import Path
from typing import Any, Iterator, Protocol, runtime_checkable

from .keys import READ_CHUNK as READ_CHUNK, blob_key as blob_key, check_key as check_key
from .keys import check_upload_id as check_upload_id


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

    def put_small(self, key: str, data: bytes) -> None:
        """Store ``data`` (bytes already known to hash to ``key``) as a final blob in one step, durable on
        return, unless it is stored already (a batch commit's files, see server/blob_batch.py)."""

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
