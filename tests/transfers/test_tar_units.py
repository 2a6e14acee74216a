"""Unit tests (no server): the server's virtual tar layout and the client's streaming tar reader."""
from __future__ import annotations

import hashlib
import io
import os
import random
import tarfile

import pytest

from oaiofs.client.tarstream import TarStream, parse_pax
from oaiofs.server.tarlayout import PAX_SHA256, TarLayout, TarMember

pytestmark = pytest.mark.backend_neutral     # docs/testing.md: not rerun on PostgreSQL + S3

SIZES = [0, 1, 511, 512, 513, 10_000, 70_001]


def _layout() -> tuple[TarLayout, dict[str, bytes]]:
    blobs: dict[str, bytes] = {}
    members = []
    for i, size in enumerate(SIZES):
        data = os.urandom(size)
        key = f"k{i}"
        blobs[key] = data
        name = f"data/{'deep/' * i}{'é' * (i * 30)}f{i}.bin"
        members.append(TarMember(name, size, 1_700_000_000 + i, key, hashlib.sha256(data).hexdigest()))
    return TarLayout(members), blobs


def _open_blob(blobs):
    def open_blob(key, start, end):
        data = blobs[key][start:end]
        return (data[i:i + 4096] for i in range(0, len(data), 4096))
    return open_blob


def test_layout_is_a_valid_tar_of_exactly_its_announced_size():
    layout, blobs = _layout()
    data = b"".join(layout.iter_range(_open_blob(blobs)))
    assert len(data) == layout.size and layout.size % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        assert [m.size for m in members] == SIZES
        for i, member in enumerate(members):
            content = tar.extractfile(member).read()
            assert content == blobs[f"k{i}"]
            assert member.pax_headers[PAX_SHA256] == hashlib.sha256(content).hexdigest()
            assert member.mtime == 1_700_000_000 + i


def test_any_range_of_the_layout_matches_the_whole():
    layout, blobs = _layout()
    whole = b"".join(layout.iter_range(_open_blob(blobs)))
    rng = random.Random(7)
    for _ in range(300):
        start = rng.randrange(layout.size)
        end = rng.randrange(start, layout.size + 1)
        assert b"".join(layout.iter_range(_open_blob(blobs), start, end)) == whole[start:end]


def test_a_blob_of_the_wrong_size_fails_loudly():
    layout = TarLayout([TarMember("data/x", 10, 0, "k")])
    with pytest.raises(OSError, match="shorter"):
        b"".join(layout.iter_range(lambda key, s, e: iter([b"12345"])))


def test_tarstream_reads_what_tarfile_writes():
    buf = io.BytesIO()
    expected = {}
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i, size in enumerate(SIZES):
            name = f"data/{'x' * (120 + i)}/ü{i}"
            data = os.urandom(size)
            info = tarfile.TarInfo(name)
            info.size, info.mtime = size, 1_600_000_000 + i
            info.pax_headers = {"OAIO.sha256": hashlib.sha256(data).hexdigest()}
            tar.addfile(info, io.BytesIO(data))
            expected[name] = data
        folder = tarfile.TarInfo("data/folder")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    raw = buf.getvalue()
    counted = []
    stream = TarStream(io.BytesIO(raw), on_bytes=counted.append)
    seen = {}
    for member, offset in stream:
        if member.isreg():
            pieces = []
            while piece := stream.read(1000):
                pieces.append(piece)
            seen[member.name] = b"".join(pieces)
            assert member.pax_headers["OAIO.sha256"] == hashlib.sha256(seen[member.name]).hexdigest()
            # a tar that starts at this member's header is a valid tar of the rest (Range resume)
            with tarfile.open(fileobj=io.BytesIO(raw[offset:]), mode="r|") as rest:
                assert next(iter(rest)).name == member.name
        else:
            assert member.isdir() and member.name == "data/folder"
    assert seen == expected
    assert sum(counted) == stream.pos


def test_tarstream_skips_unread_data_and_reports_truncation():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in ("data/" + "long" * 40, "data/short"):
            info = tarfile.TarInfo(name)
            info.size = 3000
            tar.addfile(info, io.BytesIO(b"z" * 3000))
    names = [m.name for m, _ in TarStream(io.BytesIO(buf.getvalue()))]
    assert "data/short" in names and len(names) == 3          # the GNU long-name entry is reported as-is
    with pytest.raises(tarfile.ReadError):
        for _member, _ in TarStream(io.BytesIO(buf.getvalue()[:2000])):
            pass


def test_parse_pax_refuses_garbage():
    assert parse_pax(b"19 path=data/a/b.c\n") == {"path": "data/a/b.c"}
    for bad in (b"xx path=a\n", b"99 path=a\n", b"10 pathxa\n"):
        with pytest.raises(tarfile.HeaderError):
            parse_pax(bad)
