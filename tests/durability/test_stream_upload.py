"""Uploading a file while it is written (``oaiofs.vfs.stream_upload``) against a real server.

The bytes go out before the release, but nothing is committed until the journal
applies the submitted op; out-of-order writes drop the stream and the normal path
is used.
"""
from __future__ import annotations

import os
from pathlib import Path

from oaiofs.client.uploads import TusUploader
from oaiofs.errors import Gone, NotFound
from oaiofs.vfs.opstore import Op
from oaiofs.vfs.stream_upload import SequentialWrites
from tests.conftest import wait_until
from tests.durability.conftest import Harness
from tests.durability.helpers import Recorder, sha256

MIB = 1 << 20


def write_piece(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b" if path.exists() else "wb") as fh:
        fh.seek(offset)
        fh.write(data)


def server_offset(harness: Harness, url: str) -> int | None:
    try:
        return TusUploader(harness.api).offset(url)
    except (NotFound, Gone):
        return None


def test_sequential_file_streams_before_release_and_commits_only_after(harness: Harness) -> None:
    oid = harness.new_object()
    journal = harness.journal(recorder=(rec := Recorder()))
    journal.start()
    streams = SequentialWrites(journal, min_file=MIB)
    data, src, key = os.urandom(10 * MIB + 123), harness.tmp / "live.bin", (oid, "big.bin")
    for offset in range(0, len(data), MIB):
        write_piece(src, offset, data[offset:offset + MIB])
        streams.wrote(key, oid, "big.bin", 0, src, offset, len(data[offset:offset + MIB]))
    handle = streams._streams[key]
    wait_until(lambda: handle.sent >= 8 * MIB, message="the stream sends the final bytes")
    assert handle.url is not None and server_offset(harness, handle.url) == handle.sent
    assert harness.file_doc(oid, "big.bin") is None          # nothing committed before the release

    op = journal.submit(Op("put_file", oid, "big.bin", base_version=0, sha256=sha256(data)), src,
                        stream=streams.take(key))
    assert op.upload_url == handle.url and op.offset >= 8 * MIB
    assert journal.wait_idle(timeout=60)
    assert not rec.conflicts and not rec.failed
    assert harness.file_doc(oid, "big.bin")["sha256"] == sha256(data)
    assert harness.api.get_file(oid, "big.bin") == data


def test_out_of_order_write_drops_the_stream_and_the_normal_path_works(harness: Harness) -> None:
    oid = harness.new_object()
    journal = harness.journal(recorder=(rec := Recorder()))
    journal.start()
    streams = SequentialWrites(journal, min_file=MIB)
    src, key = harness.tmp / "edit.bin", (oid, "edit.bin")
    data = bytearray(os.urandom(8 * MIB))
    for offset in range(0, len(data), MIB):
        write_piece(src, offset, bytes(data[offset:offset + MIB]))
        streams.wrote(key, oid, "edit.bin", 0, src, offset, MIB)
    handle = streams._streams[key]
    wait_until(lambda: handle.url is not None and handle.sent > 0, message="streaming started")
    data[100:105] = b"HELLO"                                    # a write behind the end: not sequential
    write_piece(src, 100, b"HELLO")
    streams.wrote(key, oid, "edit.bin", 0, src, 100, 5)
    assert streams.take(key) is None and handle.failed
    wait_until(lambda: server_offset(harness, handle.url) is None, message="the stream's upload is dropped")
    op = journal.submit(Op("put_file", oid, "edit.bin", base_version=0), src)
    assert op.upload_url is None
    assert journal.wait_idle(timeout=60) and not rec.failed
    assert harness.api.get_file(oid, "edit.bin") == bytes(data)


def test_a_queued_op_of_the_object_prevents_streaming(harness: Harness) -> None:
    oid = harness.new_object()
    journal = harness.journal()                                 # not started: ops stay queued
    journal.submit(Op("mkdir", oid, "docs"))
    assert journal.begin_stream(oid, "docs/x.bin", 0, harness.tmp / "x") is None
    streams = SequentialWrites(journal, min_file=1)
    (harness.tmp / "x").write_bytes(b"abc")
    streams.wrote((oid, "docs/x.bin"), oid, "docs/x.bin", 0, harness.tmp / "x", 0, 3)
    assert streams.take((oid, "docs/x.bin")) is None


def test_stream_whose_file_changed_underneath_is_caught_by_the_whole_file_sha256(harness: Harness) -> None:
    """A drive that wrongly reported a sequential write cannot corrupt the stored file."""
    oid = harness.new_object()
    journal = harness.journal(recorder=(rec := Recorder()))
    journal.start()
    src = harness.tmp / "liar.bin"
    data = bytearray(os.urandom(6 * MIB))
    src.write_bytes(bytes(data))
    handle = journal.begin_stream(oid, "liar.bin", 0, src)
    assert handle is not None
    handle.advance(len(data))
    wait_until(lambda: handle.sent == len(data), message="everything streamed")
    data[:4] = b"XXXX"                                          # changed after it was sent
    write_piece(src, 0, b"XXXX")
    op = journal.submit(Op("put_file", oid, "liar.bin", base_version=0, sha256=sha256(bytes(data))), src,
                        stream=handle)
    assert op.upload_url == handle.url
    assert journal.wait_idle(timeout=60) and not rec.failed and not rec.conflicts
    assert harness.api.get_file(oid, "liar.bin") == bytes(data)


def test_forget_drops_the_upload_and_commits_nothing(harness: Harness) -> None:
    oid = harness.new_object()
    journal = harness.journal()
    journal.start()
    streams = SequentialWrites(journal, min_file=MIB)
    src, key = harness.tmp / "tmp.bin", (oid, "tmp.bin")
    payload = os.urandom(6 * MIB)
    for offset in range(0, len(payload), MIB):
        write_piece(src, offset, payload[offset:offset + MIB])
        streams.wrote(key, oid, "tmp.bin", 0, src, offset, MIB)
    handle = streams._streams[key]
    wait_until(lambda: handle.sent > 0, message="streaming started")
    streams.forget(key)
    wait_until(lambda: server_offset(harness, handle.url) is None, message="the upload is dropped")
    assert harness.file_doc(oid, "tmp.bin") is None
