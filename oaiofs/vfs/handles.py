"""Open-file handles: small state holders kept in a table indexed by the FUSE file handle number.

A :class:`FileHandle` reads and writes an attached file through its cache item;
a :class:`ValuesHandle` edits values.json in memory and submits the new values
once they parse (flush/fsync/release). Handles have no locks of their own: the
item's lock guards the bytes, and FUSE does not call one handle concurrently for
writes in ways that matter here (the values buffer is guarded by ``lock``).
"""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

from .cache import Item
from .errors import BadHandle
from .fetcher import ReadState


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

    @property
    def path(self) -> str:
        return self.item.key[1]  # follows renames of the open file


@dataclass(eq=False)
class ValuesHandle:
    """An open values.json."""

    oaio_id: str
    writable: bool
    base_values: dict[str, Any]
    base_version: int
    buffer: bytearray
    dirty: bool = False
    submitted: bytes | None = None          # the text last accepted (not submitted twice)
    lock: threading.Lock = field(default_factory=threading.Lock)


Handle = FileHandle | ValuesHandle


class HandleTable:
    """fh number -> handle (dict reads are atomic; adds/removes take a lock)."""

    def __init__(self) -> None:
        self._handles: dict[int, Handle] = {}
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, handle: Handle) -> int:
        with self._lock:
            fh = next(self._numbers)
            self._handles[fh] = handle
            return fh

    def get(self, fh: int) -> Handle:
        try:
            return self._handles[fh]
        except KeyError:
            raise BadHandle(f"no open file handle {fh}") from None

    def pop(self, fh: int) -> Handle:
        with self._lock:
            handle = self._handles.pop(fh, None)
        if handle is None:
            raise BadHandle(f"no open file handle {fh}")
        return handle

    def all(self) -> list[Handle]:
        with self._lock:
            return list(self._handles.values())
