"""A virtual, deterministic tar of blobs: its exact size and any byte range, without building it.

The tar is laid out from member names and sizes alone (PAX headers, data padded
to 512 bytes, two zero blocks, padded to tar's 10 KiB record), so a cart can
announce ``Content-Length`` and answer Range requests while streaming the bytes
straight from the blob store. Every member carries its sha256 in the PAX record
``OAIO.sha256`` so a client can verify what it extracts.
"""
from __future__ import annotations

import dataclasses
import tarfile
from typing import Callable, Iterator

BLOCK = tarfile.BLOCKSIZE            # 512
RECORD = tarfile.RECORDSIZE          # 10240
PAX_SHA256 = "OAIO.sha256"
_ZEROS = bytes(RECORD)


@dataclasses.dataclass(frozen=True)
class TarMember:
    """One regular file of the tar, its bytes being the blob ``blob_key``."""

    name: str
    size: int
    mtime: float
    blob_key: str
    sha256: str | None = None


@dataclasses.dataclass(frozen=True)
class _Segment:
    start: int
    length: int
    header: bytes | None = None      # literal bytes (tar header) ...
    member: TarMember | None = None  # ... or the member's data
    padding: int = 0                 # zero bytes (data padding, end of archive)


def member_header(member: TarMember) -> bytes:
    """The PAX-format header block(s) of ``member``."""
    info = tarfile.TarInfo(member.name)
    info.size = member.size
    info.mtime = int(member.mtime)
    info.mode = 0o644
    info.type = tarfile.REGTYPE
    if member.sha256:
        info.pax_headers = {PAX_SHA256: member.sha256}
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


class TarLayout:
    """Byte layout of a tar holding ``members`` in order."""

    def __init__(self, members: list[TarMember]) -> None:
        self.segments: list[_Segment] = []
        pos = 0
        for member in members:
            header = member_header(member)
            self.segments.append(_Segment(pos, len(header), header=header))
            pos += len(header)
            self.segments.append(_Segment(pos, member.size, member=member))
            pos += member.size
            pad = -member.size % BLOCK
            if pad:
                self.segments.append(_Segment(pos, pad, padding=pad))
                pos += pad
        trailer = 2 * BLOCK
        trailer += -(pos + trailer) % RECORD
        self.segments.append(_Segment(pos, trailer, padding=trailer))
        self.size = pos + trailer

    def iter_range(self, open_blob: Callable[[str, int, int], Iterator[bytes]],
                   start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield bytes ``[start, end)`` of the tar; ``open_blob(key, s, e)`` yields a blob slice."""
        end = self.size if end is None else min(end, self.size)
        for seg in self.segments:
            seg_end = seg.start + seg.length
            if seg_end <= start or seg.length == 0:
                continue
            if seg.start >= end:
                break
            lo = max(start, seg.start) - seg.start
            hi = min(end, seg_end) - seg.start
            if seg.header is not None:
                yield seg.header[lo:hi]
            elif seg.member is not None:
                yield from _exactly(open_blob(seg.member.blob_key, lo, hi), hi - lo, seg.member.name)
            else:
                remaining = hi - lo
                while remaining:
                    piece = min(remaining, RECORD)
                    yield _ZEROS[:piece]
                    remaining -= piece


def _exactly(pieces: Iterator[bytes], length: int, name: str) -> Iterator[bytes]:
    """Pass ``pieces`` through, failing loudly if the blob is shorter or longer than promised."""
    seen = 0
    for piece in pieces:
        seen += len(piece)
        if seen > length:
            raise OSError(f"blob of {name!r} is longer than recorded")
        yield piece
    if seen != length:
        raise OSError(f"blob of {name!r} is shorter than recorded ({seen} < {length})")
