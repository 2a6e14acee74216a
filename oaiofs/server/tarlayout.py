"""A virtual, deterministic tar of blobs: its exact size and any byte range, without building it.

The tar is laid out from member names and sizes alone (PAX headers, data padded
to 512 bytes, two zero blocks, padded to tar's 10 KiB record), so a cart can
announce ``Content-Length`` and answer Range requests while streaming the bytes
straight from the blob store. Every member carries its sha256 in the PAX record
``OAIO.sha256`` so a client can verify what it extracts.

Members carry the stored POSIX metadata: permission bits, the mtime in nanoseconds
(PAX ``mtime`` as ``seconds.nanoseconds`` when it is not whole seconds, as GNU tar
writes it) and symbolic links as ``SYMTYPE`` members whose target is stored as given
(long ones in PAX ``linkpath``); a link has no data, its ``OAIO.sha256`` is the
sha256 of its target's UTF-8 bytes.
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
    """One member of the tar: a regular file whose bytes are the blob ``blob_key``, or a link to ``target``."""

    name: str
    size: int
    mtime: float
    blob_key: str
    sha256: str | None = None
    mode: int = 0o644
    mtime_ns: int | None = None          # exact mtime; None: ``mtime``
    target: str | None = None            # set: a symbolic link (``size`` 0, no blob)


@dataclasses.dataclass(frozen=True)
class _Segment:
    start: int
    length: int
    header: bytes | None = None      # literal bytes (tar header) ...
    member: TarMember | None = None  # ... or the member's data
    padding: int = 0                 # zero bytes (data padding, end of archive)


def pax_mtime(mtime_ns: int) -> str:
    """``mtime_ns`` as a PAX ``mtime`` value: ``seconds.nanoseconds`` (exact, also before 1970)."""
    sign = "-" if mtime_ns < 0 else ""
    seconds, nanos = divmod(abs(mtime_ns), 1_000_000_000)
    return f"{sign}{seconds}.{nanos:09d}"


def member_header(member: TarMember) -> bytes:
    """The PAX-format header block(s) of ``member``."""
    info = tarfile.TarInfo(member.name)
    pax: dict[str, str] = {}
    mtime_ns = member.mtime_ns if member.mtime_ns is not None else round(member.mtime * 1e9)
    seconds = mtime_ns // 1_000_000_000
    if mtime_ns % 1_000_000_000 or not 0 <= seconds < 8 ** 11:
        pax["mtime"] = pax_mtime(mtime_ns)
        info.mtime = min(max(seconds, 0), 8 ** 11 - 1)
    else:
        info.mtime = seconds
    info.mode = member.mode & 0o7777
    if member.target is not None:
        info.type, info.size, info.linkname = tarfile.SYMTYPE, 0, member.target
    else:
        info.type, info.size = tarfile.REGTYPE, member.size
    if member.sha256:
        pax[PAX_SHA256] = member.sha256
    info.pax_headers = pax
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
            if member.target is not None:
                continue                 # a link: no data blocks
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
