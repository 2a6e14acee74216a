"""A lean streaming reader of tar archives (ustar headers with PAX records), for cart downloads.

``tarfile``'s stream mode copies every byte through a join-and-slice buffer, which
halves download speed; this reader parses headers with ``tarfile.TarInfo.frombuf``
(checksums included) and hands member data straight from the socket. It knows
regular files, folders and PAX extended headers (what the oaiofs server writes);
anything else (links, devices, GNU long names) is reported as-is for the caller to
refuse. Offsets are counted so a broken download can resume with Range.
"""
from __future__ import annotations

import tarfile
from typing import Any, Iterator

BLOCK = tarfile.BLOCKSIZE
_ZERO_BLOCK = bytes(BLOCK)


def parse_pax(data: bytes) -> dict[str, str]:
    """PAX records ``"<len> <key>=<value>\\n"`` -> dict (raises ``tarfile.HeaderError`` if malformed)."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos:pos + 1] != b"\0":
        space = data.find(b" ", pos)
        if space < 0 or not data[pos:space].isdigit():
            raise tarfile.HeaderError("malformed PAX record length")
        end = pos + int(data[pos:space])
        record = data[space + 1:end]
        if end > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise tarfile.HeaderError("malformed PAX record")
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = end
    return records


class TarStream:
    """Iterate over the members of a tar read sequentially from ``raw`` (anything with ``read(n)``)."""

    def __init__(self, raw: Any, on_bytes: Any = None) -> None:
        self.raw = raw
        self.on_bytes = on_bytes           # called with the number of bytes of every read
        self.pos = 0                       # bytes consumed so far
        self._left = 0                     # data bytes of the current member not read yet
        self._pad = 0

    def _read(self, size: int) -> bytes:
        data: bytes = self.raw.read(size)
        if self.on_bytes is not None and data:
            self.on_bytes(len(data))
        self.pos += len(data)
        return data

    def _read_exact(self, size: int) -> bytes:
        pieces, need = [], size
        while need:
            piece = self._read(need)
            if not piece:
                raise tarfile.ReadError(f"unexpected end of the tar stream at byte {self.pos}")
            pieces.append(piece)
            need -= len(piece)
        return b"".join(pieces)

    def _skip_rest(self) -> None:
        while self._left:
            self.read(min(self._left, 1 << 20))
        if self._pad:
            self._read_exact(self._pad)
            self._pad = 0

    def __iter__(self) -> Iterator[tuple[tarfile.TarInfo, int]]:
        """Yield ``(member, offset of its first header)``; read its data with :meth:`read` before going on."""
        pax: dict[str, str] = {}
        start = self.pos
        while True:
            self._skip_rest()
            block = self._read_exact(BLOCK)
            if block == _ZERO_BLOCK:
                return
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            if info.type == tarfile.XHDTYPE:
                pax = parse_pax(self._read_exact(-(-info.size // BLOCK) * BLOCK)[:info.size])
                continue
            if "path" in pax:
                info.name = pax["path"]
            if "size" in pax:
                info.size = int(pax["size"])
            if "mtime" in pax:
                info.mtime = float(pax["mtime"])
            info.pax_headers, pax = pax, {}
            self._left, self._pad = info.size, -info.size % BLOCK     # the data blocks of any type
            info.offset, info.offset_data = start, self.pos
            yield info, start
            self._skip_rest()
            start = self.pos

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the current member's data (b"" at its end)."""
        if not self._left:
            return b""
        data = self._read(min(size, self._left))
        if not data:
            raise tarfile.ReadError(f"unexpected end of the tar stream at byte {self.pos}")
        self._left -= len(data)
        return data
