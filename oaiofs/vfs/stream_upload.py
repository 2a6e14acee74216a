"""Uploading a file while it is still being written (tus ``creation-defer-length``).

When a file is written sequentially from offset 0, every byte below the highest
written offset is final once the writer has moved past it. A :class:`StreamHandle`
opens a deferred-length upload for such a file and streams the final bytes in the
background; at release the journal's ``submit(op, data, stream=handle)`` adopts the
upload's URL and offset, so the journal worker only sends the tail, fixes the
length (with the whole-file sha256) and commits. Durability is unchanged: the
server cannot commit a deferred upload before that last PATCH, which only the
journal sends after the release, and the whole-file sha256 is verified then.

:class:`SequentialWrites` is the small hook a drive calls from its FUSE callbacks::

    streams = SequentialWrites(journal)
    # open/create for writing (truncated or new file):  nothing to call
    streams.wrote(key, oaio_id, path, base_version, data_path, offset, length)   # after each write
    streams.changed(key)        # truncate/fallocate/any write that is not sequential
    handle = streams.take(key)  # at the release that submits the file
    journal.submit(op, data_path, stream=handle)
    streams.forget(key)         # a release that submits nothing (the upload is dropped)
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Hashable

from ..errors import OaioError
from .seams import Uploader

log = logging.getLogger(__name__)

STREAM_MIN_PIECE = 4 << 20        # send once this many final bytes are waiting (fewer, larger PATCHes)
STREAM_MAX_PIECE = 20 << 20       # bytes per PATCH at most
STREAM_MIN_FILE = 8 << 20         # files are streamed once they grew past this (small ones: at release)


class StreamHandle:
    """One deferred-length upload fed from a file that is being written sequentially."""

    def __init__(self, uploader: Uploader, oaio_id: str, path: str, base_version: int | None,
                 data_file: Path, min_piece: int = STREAM_MIN_PIECE, max_piece: int = STREAM_MAX_PIECE,
                 limit_bps: int | None = None) -> None:
        self.uploader = uploader
        self.limit_bps = limit_bps           # the mount's upload bandwidth cap applies here too
        self.oaio_id, self.path, self.base_version = oaio_id, path, base_version
        self.data_file = Path(data_file)
        self.min_piece, self.max_piece = min_piece, max_piece
        self.url: str | None = None
        self.sent = 0                        # bytes the server confirmed
        self.failed = False
        self._final = 0                      # bytes known to be final
        self._stop = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"stream-upload {path}", daemon=True)
        self._thread.start()

    def advance(self, final_offset: int) -> None:
        """Bytes below ``final_offset`` will not change any more."""
        with self._cond:
            if final_offset > self._final:
                self._final = final_offset
                if self._final - self.sent >= self.min_piece:    # not on every 128 KiB write: the
                    self._cond.notify_all()                      # sender waits for a whole piece

    def detach(self) -> tuple[str, int] | None:
        """Stop streaming and hand over ``(url, bytes the server has)``, or None if the stream failed.

        Does not wait for a PATCH in flight: the server orders requests on one
        upload, and bytes sent twice are only checked, not appended again.
        """
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            if self.failed or self.url is None:
                usable = None
            else:
                usable = (self.url, self.sent)
        if usable is None:
            self.abort()
        return usable

    def abort(self) -> None:
        """Stop streaming and drop the upload on the server (in the background)."""
        with self._cond:
            self._stop = True
            self.failed = True
            self._cond.notify_all()
        threading.Thread(target=self._cancel, name=f"stream-cancel {self.path}", daemon=True).start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the streaming thread to end (for tests and shutdown); True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- the streaming thread ---
    def _run(self) -> None:
        try:
            url = self.uploader.create(self.oaio_id, self.path, None, base_version=self.base_version)
            with self._cond:
                self.url = url
            started = time.monotonic()
            with open(self.data_file, "rb") as handle:
                while True:
                    with self._cond:
                        self._cond.wait_for(lambda: self._stop or self._final - self.sent >= self.min_piece)
                        if self._stop:
                            return
                        end = min(self._final, self.sent + self.max_piece)
                    offset = self.uploader.send_range(url, handle.fileno(), self.sent, end - self.sent)
                    with self._cond:
                        self.sent = offset
                        if self.limit_bps:         # stay under the cap (wakes early on stop)
                            ahead_s = offset / self.limit_bps - (time.monotonic() - started)
                            self._cond.wait_for(lambda: self._stop, timeout=max(0.0, ahead_s))
        except (OaioError, OSError) as exc:
            log.info("%s/%s: streaming the upload while writing stopped (%s); it is sent at release",
                     self.oaio_id, self.path, exc)
            with self._cond:
                self.failed = True

    def _cancel(self) -> None:
        self._thread.join()
        if self.url is not None:
            try:
                self.uploader.cancel(self.url)
            except (OaioError, OSError) as exc:
                log.info("%s/%s: could not drop stream upload %s (%s); it expires on the server",
                         self.oaio_id, self.path, self.url, exc)


class SequentialWrites:
    """Starts, feeds and aborts :class:`StreamHandle` s for files written sequentially from offset 0."""

    def __init__(self, journal: Any, min_file: int = STREAM_MIN_FILE) -> None:
        self.journal = journal
        self.min_file = min_file
        self._lock = threading.Lock()
        self._ends: dict[Hashable, int] = {}               # key -> end of the sequential bytes so far
        self._streams: dict[Hashable, StreamHandle] = {}
        self._spoiled: set[Hashable] = set()               # written out of order: no stream until forget()

    def wrote(self, key: Hashable, oaio_id: str, path: str, base_version: int | None, data_path: Path,
              offset: int, length: int) -> None:
        """A write of ``length`` bytes at ``offset`` into a file opened for writing from empty."""
        with self._lock:
            if key in self._spoiled:
                return
            end = self._ends.get(key, 0)
            if offset != end:
                stream = self._spoil_locked(key)
            else:
                stream = None
                end = self._ends[key] = offset + length
                handle = self._streams.get(key)
                if handle is None and end >= self.min_file:
                    handle = self.journal.begin_stream(oaio_id, path, base_version, data_path)
                    if handle is None:
                        self._spoiled.add(key)      # the journal has older ops for it: not now
                    else:
                        self._streams[key] = handle
                if handle is not None:
                    handle.advance(offset)          # bytes before this write are final
        if stream is not None:
            stream.abort()

    def changed(self, key: Hashable) -> None:
        """The file changed other than by appending (truncate, a write elsewhere): stop streaming it."""
        with self._lock:
            stream = self._spoil_locked(key)
        if stream is not None:
            stream.abort()

    def take(self, key: Hashable) -> StreamHandle | None:
        """The stream of ``key`` for the journal's ``submit`` (and forget the file)."""
        with self._lock:
            self._ends.pop(key, None)
            self._spoiled.discard(key)
            return self._streams.pop(key, None)

    def forget(self, key: Hashable) -> None:
        """The file is released without being submitted: drop its stream."""
        stream = self.take(key)
        if stream is not None:
            stream.abort()

    def _spoil_locked(self, key: Hashable) -> StreamHandle | None:
        self._spoiled.add(key)
        self._ends.pop(key, None)
        return self._streams.pop(key, None)
