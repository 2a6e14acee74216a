"""The drive's typed seams, as Protocols.

What the drive needs from the client library (vfs -> client): ``ServerApi``,
``Uploader`` and ``CartReader`` (bytes of cart members, never a ``requests.Response``);
``oaiofs.client.ApiClient``, ``oaiofs.client.uploads.TusUploader`` and
``oaiofs.client.carts.CartDownloader`` satisfy them; unit tests pass fakes with the same methods. The VFS depends on these
shapes, not on ``requests`` or the concrete classes.

Whom the journal tells about each op's fate (journal -> drive): ``JournalListener``;
``oaiofs.vfs.writeback.WriteBack`` satisfies it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Iterator, Protocol

from ..errors import OaioError
from .opstore import Op

ProgressCallback = Callable[[int, int], None]      # (bytes the server has, total)


class ServerApi(Protocol):
    """The object API the drive calls (one user on one server)."""

    base_url: str

    def close(self) -> None: ...
    def list_objects(self) -> tuple[list[dict[str, Any]], int]: ...
    def get_object(self, oaio_id: str) -> dict[str, Any]: ...
    def create_object(self, values: dict[str, Any], oaio_id: str | None = None, *, app_id: str | None = None,
                      device_id: str | None = None, stamp: str | None = None) -> dict[str, Any]: ...
    def update_values(self, oaio_id: str, values: dict[str, Any], *, mode: str = "merge",
                      base_version: int | None = None) -> dict[str, Any]: ...
    def delete_object(self, oaio_id: str, base_version: int | None = None) -> dict[str, Any]: ...
    def put_file(self, oaio_id: str, path: str, data: bytes, *, base_version: int | None = None,
                 mtime: float | None = None, mtime_ns: int | None = None,
                 mode: int | None = None) -> dict[str, Any]: ...
    def set_file_meta(self, oaio_id: str, path: str, *, mode: int | None = None, mtime_ns: int | None = None,
                      base_version: int | None = None, compact: bool = False) -> dict[str, Any]: ...
    def make_link(self, oaio_id: str, path: str, target: str, *, mtime_ns: int | None = None,
                  base_version: int | None = None, compact: bool = False) -> dict[str, Any]: ...
    def delete_file(self, oaio_id: str, path: str, base_version: int | None = None, *,
                    compact: bool = False) -> dict[str, Any]: ...
    def make_dir(self, oaio_id: str, path: str, *, compact: bool = False) -> dict[str, Any]: ...
    def move(self, oaio_id: str, src: str, dst: str, *, base_version: int | None = None,
             overwrite: bool = False, compact: bool = False) -> dict[str, Any]: ...
    def subscriptions(self, oaio_id: str) -> list[dict[str, str]]: ...
    def set_subscription(self, oaio_id: str, username: str, access_right: str) -> int: ...
    def changes(self, cursor: int = 0, wait: float = 0.0,
                limit: int = 500) -> tuple[list[dict[str, Any]], int]: ...


class Uploader(Protocol):
    """Resumable uploads (tus) of whole files and of ranges of a file still being written."""

    def create(self, oaio_id: str, path: str, size: int | None, *, sha256: str | None = None,
               base_version: int | None = None, mtime: float | None = None, mtime_ns: int | None = None,
               mode: int | None = None) -> str: ...
    def cancel(self, url: str) -> None: ...
    def send_range(self, url: str, fd: int, offset: int, length: int) -> int: ...
    def upload_file(self, local_path: str | os.PathLike[str], oaio_id: str, path: str, *, url: str | None = None,
                    sha256: str | None = None, base_version: int | None = None, mtime: float | None = None,
                    on_url: Callable[[str], None] | None = None,
                    on_progress: ProgressCallback | None = None, mtime_ns: int | None = None,
                    mode: int | None = None) -> dict[str, Any]: ...


class CartReader(Protocol):
    """Server carts as the drive reads them (``vfs/source.py``): make one, wait until it is
    ready, stream a byte range of one member, or fetch a whole cart into a folder."""

    def create(self, fileids: Iterable[dict[str, Any]], uid: str | None = None) -> str: ...
    def wait(self, uid: str, timeout: float = 300.0) -> str: ...
    def member_pieces(self, uid: str, path: str, start: int = 0, end: int | None = None,
                      piece_bytes: int = 1 << 20) -> ContextManager[Iterator[bytes | memoryview]]: ...
    def fetch(self, fileids: Iterable[dict[str, Any]], dest_dir: str | os.PathLike[str],
              timeout: float = 300.0) -> list[Path]: ...


class JournalListener(Protocol):
    """The journal's reports of finished ops, made by a worker outside the journal's lock, before
    ``Journal.wait`` returns for that op (the drive's :class:`~oaiofs.vfs.writeback.WriteBack`)."""

    def on_applied(self, op: Op, doc: dict[str, Any] | None) -> None:
        """``op`` is on the server (also after a conflict copy); ``doc`` is the object after it."""

    def on_conflict(self, op: Op, conflict_copy: str) -> None:
        """The server's version changed elsewhere: the local one was kept as ``conflict_copy``."""

    def on_failed(self, op: Op, err: OaioError) -> None:
        """The server refused ``op`` for good; its bytes stay in the journal (retry/discard)."""

    def reports(self) -> ContextManager[None]:
        """A context around the reports of one batch: the drive may write the bookkeeping they
        cause together, at its end (one cache-index transaction instead of one per file)."""
