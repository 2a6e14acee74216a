"""Open-file handles, kept in a table indexed by the FUSE file handle number.

Every handle has the operations of :class:`OpenFile`, so :class:`~oaiofs.vfs.vfs.Vfs`
dispatches read/write/truncate/flush/fsync/release without asking what it is:
a :class:`FileHandle` reads and writes an attached file through its cache item
(it hands each operation to the Vfs, :class:`FileOps`); a
:class:`~oaiofs.vfs.values_file.ValuesFile` edits values.json in memory and submits
the new values once they parse (flush/fsync/release). File handles have no locks of
their own: the item's lock guards the bytes, and FUSE does not call one handle
concurrently for writes in ways that matter here.
"""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Protocol

from .cache import Item
from .errors import BadHandle
from .fetcher import ReadState


class OpenFile(Protocol):
    """What the Vfs does with any open handle (an attached file or values.json)."""

    oaio_id: str
    writable: bool

    @property
    def path(self) -> str: ...
    def read_into(self, offset: int, buf: memoryview) -> int: ...
    def write(self, offset: int, data: bytes | memoryview) -> int: ...
    def truncate(self, length: int) -> None: ...
    def flush(self) -> None: ...
    def fsync(self) -> None: ...
    def release(self) -> None: ...


class FileOps(Protocol):
    """The Vfs's operations on attached files (their cache items, the fetcher, the journal)."""

    def read_file(self, handle: "FileHandle", offset: int, buf: memoryview) -> int: ...
    def write_file(self, handle: "FileHandle", offset: int, data: bytes | memoryview) -> int: ...
    def truncate_file(self, handle: "FileHandle", length: int) -> None: ...
    def fsync_file(self, handle: "FileHandle") -> None: ...
    def release_file(self, handle: "FileHandle") -> None: ...


@dataclass(eq=False)
class FileHandle:
    """An open attached file."""

    oaio_id: str
    item: Item
    writable: bool
    base_version: int            # the server version the opened bytes belong to (0 = a new file)
    read_state: ReadState = field(default_factory=ReadState)
    wrote: bool = False
    unfilled: bool = False       # opened for writing offline: the old bytes are fetched at the first write
    files: FileOps = field(kw_only=True, repr=False)

    @property
    def path(self) -> str:
        return self.item.key[1]  # follows renames of the open file

    def read_into(self, offset: int, buf: memoryview) -> int:
        return self.files.read_file(self, offset, buf)

    def write(self, offset: int, data: bytes | memoryview) -> int:
        return self.files.write_file(self, offset, data)

    def truncate(self, length: int) -> None:
        self.files.truncate_file(self, length)

    def flush(self) -> None:
        """close(2) of a file: nothing to do (its bytes go to the journal at the last release)."""

    def fsync(self) -> None:
        self.files.fsync_file(self)

    def release(self) -> None:
        self.files.release_file(self)


class HandleTable:
    """fh number -> handle (dict reads are atomic; adds/removes take a lock)."""

    def __init__(self) -> None:
        self._handles: dict[int, OpenFile] = {}
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, handle: OpenFile) -> int:
        with self._lock:
            fh = next(self._numbers)
            self._handles[fh] = handle
            return fh

    def get(self, fh: int) -> OpenFile:
        try:
            return self._handles[fh]
        except KeyError:
            raise BadHandle(f"no open file handle {fh}") from None

    def pop(self, fh: int) -> OpenFile:
        with self._lock:
            handle = self._handles.pop(fh, None)
        if handle is None:
            raise BadHandle(f"no open file handle {fh}")
        return handle

    def all(self) -> list[OpenFile]:
        with self._lock:
            return list(self._handles.values())
