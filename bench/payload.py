"""Generated file contents: incompressible, distinct per tag, streamable without holding them in memory."""
from __future__ import annotations

import hashlib
import random
from functools import cached_property
from typing import Iterator

MIB = 1 << 20
_BLOCK = random.Random(20261121).randbytes(16 * MIB)   # shared random source


class Payload:
    """``size`` bytes built from 1 MiB chunks, each starting with the tag and its index.

    Two payloads with different tags never share a chunk, so a content-addressed store
    cannot deduplicate one against the other.
    """

    chunk_size = MIB

    def __init__(self, size: int, tag: str) -> None:
        self.size = size
        self.tag = tag

    def chunks(self) -> Iterator[bytes]:
        """The content, 1 MiB at a time."""
        header = self.tag.encode()[:48].ljust(48, b"\0")
        for index, start in enumerate(range(0, self.size, self.chunk_size)):
            length = min(self.chunk_size, self.size - start)
            offset = start % len(_BLOCK)
            body = header + index.to_bytes(16, "big") + _BLOCK[offset + 64:offset + self.chunk_size]
            yield body[:length]

    def to_bytes(self) -> bytes:
        """The whole content in memory (for sizes that fit comfortably)."""
        return b"".join(self.chunks())

    @cached_property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()

    def reader(self) -> "PayloadReader":
        """A file-like view with a length, so HTTP uploads stream it with a Content-Length."""
        return PayloadReader(self)


class PayloadReader:
    """Minimal read-only file object over a :class:`Payload` (``read`` and ``__len__``)."""

    def __init__(self, payload: Payload) -> None:
        self._chunks = payload.chunks()
        self._pending = b""
        self._remaining = payload.size

    def __len__(self) -> int:
        return self._remaining

    def read(self, n: int = -1) -> bytes:
        parts = [self._pending]
        have = len(self._pending)
        while n < 0 or have < n:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        if n >= 0:
            data, self._pending = data[:n], data[n:]
        else:
            self._pending = b""
        self._remaining -= len(data)
        return data
