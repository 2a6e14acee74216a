"""IncrementalHash: the sha256 of a file while it is being written, behind the writer.

The write path only reports *where* it wrote (``feed(offset, length)``): no bytes are
copied or kept, so a FUSE write can hand the kernel's buffer straight to ``pwrite``. A
helper thread follows the sequential frontier and hashes whole pieces from the file
(page cache), so hashing overlaps the next writes; after each piece it may start the
piece's writeback to disk (``after_piece``), so the fsync at release has little left.
``finish`` stops the helper and hashes whatever it has not seen (the tail, gaps, a
truncate-extended end) from the file. An overwrite of bytes at or below the frontier
restarts from the file at ``finish``. Callers serialise ``feed``/``truncated``/``finish``
(the cache item's lock); the helper never takes that lock.
"""
from __future__ import annotations

import hashlib
import threading
from typing import Callable

PIECE = 1 << 20              # the helper hashes (and starts writeback of) this many bytes at a time
IDLE_EXIT_S = 10.0

ReadInto = Callable[[int, memoryview], int]      # (offset, buffer) -> bytes read; raises OSError when closed


class IncrementalHash:
    """sha256 of bytes ``[0, size)`` of a file written mostly sequentially."""

    def __init__(self, read_into: ReadInto, after_piece: Callable[[int, int], None] | None = None) -> None:
        self._read_into = read_into
        self._after_piece = after_piece
        self._hasher = hashlib.sha256()
        self._hashed = 0             # bytes [0, n) are in the hasher
        self._frontier = 0           # bytes [0, n) were written in order (final unless overwritten)
        self._broken = False
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._stop = False

    def feed(self, offset: int, length: int) -> None:
        """``length`` bytes were written at ``offset``."""
        with self._cond:
            if self._broken:
                return
            if offset == self._frontier:
                self._frontier += length
                if self._frontier - self._hashed >= PIECE:
                    self._wake_locked()
            elif offset < self._frontier:
                self._broken = True          # bytes already final (maybe hashed) changed

    def truncated(self, length: int) -> None:
        with self._cond:
            if length < self._frontier:
                self._broken = True

    def finish(self, size: int) -> str:
        """The digest of the current content ``[0, size)``, read from the file where not yet hashed."""
        self._stop_helper()
        if self._broken or self._hashed > size:
            self._hasher, self._hashed, self._broken = hashlib.sha256(), 0, False
        self._hash_from_file(size)
        with self._cond:
            self._frontier = self._hashed
        return self._hasher.copy().hexdigest()

    # --- the helper thread ---
    def _wake_locked(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._follow, name="oaiofs-sha256", daemon=True)
            self._thread.start()
        else:
            self._cond.notify()

    def _follow(self) -> None:
        while True:
            with self._cond:
                ready = self._cond.wait_for(lambda: self._stop or self._broken
                                            or self._frontier - self._hashed >= PIECE, IDLE_EXIT_S)
                if not ready or self._stop or self._broken:
                    return
                end = self._hashed + (self._frontier - self._hashed) // PIECE * PIECE
            try:
                start = self._hashed
                self._hash_from_file(end)
                if self._after_piece is not None:
                    self._after_piece(start, end)
            except OSError:
                return                        # the file was closed: finish() starts over if ever called

    def _stop_helper(self) -> None:
        with self._cond:
            thread, self._stop = self._thread, True
            self._cond.notify()
        if thread is not None:
            thread.join()
        self._thread = None

    def _hash_from_file(self, end: int) -> None:
        """Hash ``[hashed, end)`` from the file (only one thread at a time gets here)."""
        if end <= self._hashed:
            return
        view = memoryview(bytearray(min(PIECE, end - self._hashed)))     # no buffer kept between calls
        while self._hashed < end:
            got = self._read_into(self._hashed, view[:min(PIECE, end - self._hashed)])
            if got <= 0:
                break
            self._hasher.update(view[:got])
            self._hashed += got
