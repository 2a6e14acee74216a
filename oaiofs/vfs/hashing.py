"""IncrementalHash: the sha256 of a file while it is being written, off the write path.

Sequential writes are queued to a helper thread that feeds the hasher, so hashing
one block overlaps receiving the next; ``finish`` drains the queue and hashes
whatever was not seen in order (gaps, a truncate-extended tail) from the file.
An overwrite of bytes already hashed restarts from the file at ``finish``.
Callers serialise ``feed``/``truncated``/``finish`` (the cache item's lock).
"""
from __future__ import annotations

import hashlib
import queue
import threading
from typing import Callable

QUEUE_BLOCKS = 32            # at most this many written blocks wait for the hasher (memory bound)
IDLE_EXIT_S = 10.0
READ_PIECE = 1 << 20


class IncrementalHash:
    """sha256 of bytes ``[0, size)`` of a file written mostly sequentially."""

    def __init__(self) -> None:
        self._hasher = hashlib.sha256()
        self._queued_upto = 0        # bytes [0, n) were queued or hashed, in order
        self._broken = False
        self._queue: queue.Queue[bytes] = queue.Queue(QUEUE_BLOCKS)
        self._thread: threading.Thread | None = None

    def feed(self, offset: int, data: bytes) -> None:
        """A write of ``data`` at ``offset`` happened."""
        if self._broken:
            return
        if offset == self._queued_upto:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._consume, name="oaiofs-sha256", daemon=True)
                self._thread.start()
            self._queue.put(data)
            self._queued_upto += len(data)
        elif offset < self._queued_upto:
            self._broken = True          # bytes already hashed changed

    def truncated(self, length: int) -> None:
        if length < self._queued_upto:
            self._broken = True

    def finish(self, read_at: Callable[[int, int], bytes], size: int) -> str:
        """The digest of the current content (``read_at(offset, n)`` reads the file)."""
        self._drain()
        if self._broken or self._queued_upto > size:
            self._hasher, self._queued_upto, self._broken = hashlib.sha256(), 0, False
        pos = self._queued_upto
        while pos < size:
            piece = read_at(pos, min(READ_PIECE, size - pos))
            if not piece:
                break
            self._hasher.update(piece)
            pos += len(piece)
        self._queued_upto = pos
        return self._hasher.copy().hexdigest()

    def _consume(self) -> None:
        while True:
            try:
                data = self._queue.get(timeout=IDLE_EXIT_S)
            except queue.Empty:
                return
            if not data:
                return
            self._hasher.update(data)

    def _drain(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(b"")                       # stop marker, after everything queued
            thread.join()
        self._thread = None
        while True:                                    # blocks queued after an idle exit
            try:
                data = self._queue.get_nowait()
            except queue.Empty:
                return
            if data:
                self._hasher.update(data)
