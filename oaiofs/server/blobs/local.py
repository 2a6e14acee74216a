"""The default blob store: a folder on the local file system.

Layout: ``<root>/sha256/ab/cd/<sha256>`` for final blobs, ``<root>/staging/<upload id>``
for uploads in progress. Both live under one root, so committing a staged upload
is a single ``os.replace`` on one file system (atomic, never delete-then-rename).
"""
from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any, Iterator

from ...errors import InsufficientStorage, NotFound
from ..diskfull import FULL_ERRNOS
from .keys import READ_CHUNK, check_key, check_upload_id, _KEY_RE

logger = logging.getLogger(__name__)


class LocalBlobStore:
    """Content-addressed blobs and upload staging files under one folder."""

    def __init__(self, root: Path, *, min_free_bytes: int = 0) -> None:
        self.root = Path(root)
        self.min_free_bytes = min_free_bytes
        self.staging_dir = self.root / "staging"
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "sha256").mkdir(exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    # --- final blobs ---
    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise NotFound("blob is missing", {"key": key}) from None

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        try:
            handle = open(self._path(key), "rb")
        except FileNotFoundError:
            raise NotFound("blob is missing", {"key": key}) from None
        return _read_range(handle, start, end)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def list_blobs(self) -> Iterator[tuple[str, float, int]]:
        base = self.root / "sha256"
        for dirpath, _dirs, names in os.walk(base):
            for name in names:
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if _KEY_RE.match(key):
                    try:
                        st = path.stat()
                    except FileNotFoundError:
                        continue
                    yield key, st.st_mtime, st.st_size

    def check_space(self, nbytes: int) -> None:
        st = os.statvfs(self.root)
        free = st.f_bavail * st.f_frsize
        if free - max(0, nbytes) < self.min_free_bytes:
            raise InsufficientStorage("the server's disk is full; nothing was stored",
                                      {"free_bytes": free, "needed": nbytes})

    # --- staging ---
    def _staging_path(self, upload_id: str) -> Path:
        return self.staging_dir / check_upload_id(upload_id)

    def staging_create(self, upload_id: str) -> dict[str, Any]:
        self._staging_path(upload_id).touch()
        return {}

    def staging_write(self, upload_id: str, offset: int, data: bytes, state: dict[str, Any]) -> dict[str, Any]:
        path = self._staging_path(upload_id)
        try:
            handle = open(path, "r+b")
        except FileNotFoundError:
            raise NotFound("upload staging area is missing", {"upload_id": upload_id}) from None
        try:
            with handle:
                self.check_space(len(data))
                handle.seek(offset)
                handle.write(data)
                handle.truncate(offset + len(data))
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                self._truncate(path, offset)
                raise InsufficientStorage("the server's disk is full; nothing was stored",
                                          {"offset": offset}) from None
            raise
        return state

    @staticmethod
    def _truncate(path: Path, size: int) -> None:
        """Give back what a failed write had taken (best effort)."""
        try:
            os.truncate(path, size)
        except OSError:
            pass

    def staging_read(self, upload_id: str, state: dict[str, Any]) -> Iterator[bytes]:
        try:
            handle = open(self._staging_path(upload_id), "rb")
        except FileNotFoundError:
            raise NotFound("upload staging area is missing", {"upload_id": upload_id}) from None
        return _read_range(handle, 0, None)

    def staging_commit(self, upload_id: str, key: str, state: dict[str, Any]) -> None:
        src = self._staging_path(upload_id)
        dst = self._path(key)
        if not src.exists():
            if dst.is_file():
                return
            raise NotFound("upload staging area is missing", {"upload_id": upload_id})
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            with open(src, "rb") as handle:
                os.fsync(handle.fileno())
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                raise InsufficientStorage("the server's disk is full; nothing was stored") from None
            raise
        if dst.is_file():                   # same bytes already stored: dedupe
            src.unlink()
            return
        os.replace(src, dst)
        logger.debug("committed %s -> %s", upload_id, key)

    def put_small(self, key: str, data: bytes) -> None:
        """Store ``data`` as blob ``key`` in one step unless it is there: a staging file written and
        fsynced, then renamed into place (a batch commit's files; see blob_batch.py)."""
        dst = self._path(key)
        if dst.is_file():
            return
        self.check_space(len(data))
        for attempt in (1, 2):              # the purge may take a staging file that belongs to no upload row
            tmp = self.staging_dir / ("batch-" + secrets.token_urlsafe(18))
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, dst)
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise
            except OSError as exc:
                if exc.errno in FULL_ERRNOS:
                    raise InsufficientStorage("the server's disk is full; nothing was stored") from None
                raise
            finally:
                tmp.unlink(missing_ok=True)

    def staging_delete(self, upload_id: str, state: dict[str, Any]) -> None:
        try:
            self._staging_path(upload_id).unlink()
        except FileNotFoundError:
            pass

    def staging_ids(self) -> list[str]:
        return sorted(p.name for p in self.staging_dir.iterdir() if p.is_file())


def _read_range(handle: Any, start: int, end: int | None) -> Iterator[bytes]:
    """Yield ``[start, end)`` of an open binary file in ``READ_CHUNK`` pieces, then close it."""
    with handle:
        handle.seek(start)
        remaining = None if end is None else max(0, end - start)
        while remaining is None or remaining > 0:
            piece = handle.read(READ_CHUNK if remaining is None else min(READ_CHUNK, remaining))
            if not piece:
                break
            if remaining is not None:
                remaining -= len(piece)
            yield piece
