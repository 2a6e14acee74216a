"""Unit tests of the drive's FUSE-free layers over in-memory fakes."""
from __future__ import annotations

import errno
import json
import os
import threading

import pytest

from oaiofs.errors import Forbidden, InvalidValue, NotEmpty, NotFound
from oaiofs.vfs.cache import Cache
from oaiofs.vfs.errors import CrossDevice, NotCached, NotPermitted
from oaiofs.vfs.fetcher import READAHEAD_MAX_BYTES, READAHEAD_MIN_BYTES, Fetcher, ReadState
from oaiofs.vfs.namespace import Namespace
from oaiofs.vfs.opstore import Op
from oaiofs.vfs.overlay import build_view
from oaiofs.vfs.ranges import RangeSet
from oaiofs.vfs.vfs import Vfs, VfsOptions
from tests.conftest import wait_until
from tests.drive.fakes import FakeJournal, FakeSource, object_doc

MiB = 1 << 20


# --- RangeSet -------------------------------------------------------------------------
def test_rangeset_merges_and_reports_gaps():
    r = RangeSet()
    r.add(0, 10)
    r.add(20, 30)
    assert r.missing(0, 40) == [(10, 20), (30, 40)]
    r.add(5, 25)
    assert r.to_list() == [[0, 30]] and r.contains(0, 30) and not r.contains(0, 31)
    r.add(40, 50)
    assert r.present_end(3) == 30 and r.present_end(35) == 35 and r.next_start(31) == 40
    r.remove_from(45)
    assert r.to_list() == [[0, 30], [40, 45]] and r.total() == 35
    r.remove_from(10)
    assert r.to_list() == [[0, 10]]


# --- overlay + namespace ----------------------------------------------------------------
def test_overlay_replays_pending_ops_idempotently():
    doc = object_doc("o1", "Obj", {"a.txt": b"a", "d/b.txt": b"b"})
    ops = [Op("put_file", "o1", "new.txt", size=3, sha256="s"), Op("move", "o1", "d", dst="e"),
           Op("delete_path", "o1", "a.txt"), Op("put_values", "o1", values={"_name": "Renamed"})]
    view = build_view(doc, ops + ops, {}, "me")                       # replaying twice changes nothing
    assert sorted(view.entries) == ["e", "e/b.txt", "new.txt"]
    assert view.values == {"_name": "Renamed"} and view.entries["new.txt"].local
    failed_delete = Op("delete_path", "o1", "a.txt", state="failed")
    assert "a.txt" in build_view(doc, [failed_delete], {}, "me").entries
    assert build_view(None, [Op("create_object", "n1", values={"_name": "N"})], {}, "me").local
    assert build_view(doc, [Op("delete_object", "o1")], {}, "me") is None


def test_namespace_names_are_stable_and_resolve_paths():
    ns = Namespace("me")
    older = object_doc("id-b", "Same", {}, created="2026-01-01T00:00:00+00:00")
    newer = object_doc("id-a", "Same", {"x/y.txt": b"y"}, created="2026-02-01T00:00:00+00:00")
    ns.load([newer, older])
    names = dict(ns.root_names())
    ns.load([older, newer])
    assert ns.root_names() == names and names["Same"] == "id-b"       # listing order does not matter
    suffixed = next(n for n in names if n != "Same")
    assert ns.resolve(f"/{suffixed}/x/y.txt").entry.size == 1
    assert ns.resolve(f"/{suffixed}/x").kind == "dir"
    assert ns.resolve("/Same/values.json").kind == "values"
    with pytest.raises(NotFound):
        ns.resolve("/Same/nope")
    ns.drop("id-b")
    assert set(ns.root_names()) == {"Same"}


# --- cache --------------------------------------------------------------------------------
def test_cache_evicts_least_recently_used_but_not_open_dirty_or_pinned(tmp_path):
    cache = Cache(tmp_path, quota_bytes=10)
    def fill(name, size=4):
        item = cache.open(("o", name), version=1, sha256=name, size=size)
        item.store(0, b"x" * size)
        return item
    a = fill("a")
    cache.close(a)
    cache.pin("o", "p")
    p = fill("p")
    cache.close(p)
    held = fill("held")                                             # open: never evicted
    b = fill("b")                                                   # needs room: "a" goes
    assert cache.peek(("o", "a")) is None and cache.peek(("o", "p")) is not None
    cache.close(b)
    cache.close(held)
    assert cache.used <= 10
    dirty = cache.create_local(("o", "new"))
    dirty.write(0, b"y" * 20)                                       # over quota, but dirty
    cache.close(dirty)
    assert cache.peek(("o", "new"))["dirty"] and cache.peek(("o", "p")) is not None


def test_cache_breaks_journal_hard_links_before_writing(tmp_path):
    cache = Cache(tmp_path / "c", quota_bytes=MiB)
    item = cache.create_local(("o", "f"))
    item.write(0, b"first")
    snapshot = tmp_path / "snap"
    os.link(item.data_path, snapshot)
    item.prepare_write()
    item.write(0, b"SECOND")
    assert snapshot.read_bytes() == b"first" and item.read(0, 6) == b"SECOND"
    assert item.finish_hash() == __import__("hashlib").sha256(b"SECOND").hexdigest()


# --- fetcher -------------------------------------------------------------------------------
def test_reader_gets_its_block_while_the_rest_is_still_missing(tmp_path):
    data = os.urandom(8 * MiB)
    source = FakeSource({("o", "big"): data})
    source.gate = threading.Event()                                  # streams stop after one chunk
    cache = Cache(tmp_path, quota_bytes=64 * MiB)
    fetcher = Fetcher(source, cache)
    item = cache.open(("o", "big"), version=1, sha256=None, size=len(data))
    state = ReadState()
    assert fetcher.read(item, state, 0, 4096) == data[:4096]
    assert not item.complete                                         # the first block came alone
    source.gate.set()
    assert fetcher.read(item, ReadState(), 5 * MiB, 4096) == data[5 * MiB:5 * MiB + 4096]
    fetcher.fill(item)
    assert item.read(0, len(data)) == data
    cache.close(item)


def test_read_ahead_window_grows_while_sequential_and_resets_on_seek():
    state = ReadState()
    w1 = state.observe(0, 128 * 1024)
    w2 = state.observe(128 * 1024, 256 * 1024)
    w3 = state.observe(256 * 1024, 384 * 1024)
    assert w1 < w2 < w3
    assert state.observe(100 * MiB, 100 * MiB + 4096) == READAHEAD_MIN_BYTES        # far seek: reset
    for i in range(20):
        window = state.observe(100 * MiB + 4096 * (i + 1), 100 * MiB + 4096 * (i + 2))
    assert window == READAHEAD_MAX_BYTES                                            # capped


def test_offline_read_of_uncached_bytes_is_an_eio(tmp_path):
    source = FakeSource({("o", "f"): b"abc"})
    source.offline = True
    cache = Cache(tmp_path, quota_bytes=MiB)
    item = cache.open(("o", "f"), version=1, sha256=None, size=3)
    with pytest.raises(NotCached) as exc:
        Fetcher(source, cache).read(item, ReadState(), 0, 3)
    assert exc.value.errno == errno.EIO


# --- Vfs over fakes -------------------------------------------------------------------------
@pytest.fixture
def vfs_env(tmp_path):
    files = {("o1", "a.txt"): b"alpha", ("o1", "d/b.txt"): b"beta", ("o2", "c.txt"): b"gamma",
             ("ro", "r.txt"): b"read only"}
    source = FakeSource(files)
    cache = Cache(tmp_path / "cache", quota_bytes=64 * MiB)
    journal = FakeJournal(tmp_path / "cache" / "journal")
    ns = Namespace("me")
    vfs = Vfs(ns, cache, Fetcher(source, cache), journal, VfsOptions())
    ns.set_pending_source(vfs.writeback.pending_ops)
    ns.load([object_doc("o1", "One", {"a.txt": b"alpha", "d/b.txt": b"beta"}),
             object_doc("o2", "Two", {"c.txt": b"gamma"}), object_doc("ro", "RO", {"r.txt": b"read only"}, "r")])
    return vfs, journal, source


def test_vfs_small_file_open_batches_its_neighbours(vfs_env):
    vfs, _, source = vfs_env
    fh, keep = vfs.open("/One/a.txt", os.O_RDONLY)
    assert vfs.read(fh, 0, 100) == b"alpha" and not keep
    vfs.release(fh)
    assert len(source.batches) == 1 and set(source.batches[0]) == {("o1", "a.txt"), ("o1", "d/b.txt"),
                                                                  ("o2", "c.txt"), ("ro", "r.txt")}
    fh, keep = vfs.open("/Two/c.txt", os.O_RDONLY)                   # no network, kernel cache kept
    assert keep and vfs.read(fh, 0, 100) == b"gamma" and len(source.batches) == 1
    vfs.release(fh)


def test_vfs_write_release_submits_and_reads_back(vfs_env):
    vfs, journal, _ = vfs_env
    fh = vfs.create("/One/new.txt")
    vfs.write(fh, 0, b"hello ")
    vfs.write(fh, 6, b"world")
    assert vfs.getattr("/One/new.txt").size == 11                    # visible before release
    vfs.release(fh)
    op = journal.ops[-1]
    assert (op.kind, op.path, op.size) == ("put_file", "new.txt", 11)
    assert open(op.data_file, "rb").read() == b"hello world"         # the journal's snapshot
    fh, _ = vfs.open("/One/new.txt", os.O_RDWR)                       # write again: copy-on-write
    vfs.write(fh, 0, b"HELLO")
    vfs.release(fh)
    assert open(op.data_file, "rb").read() == b"hello world"
    assert open(journal.ops[-1].data_file, "rb").read() == b"HELLO world"
    fh, _ = vfs.open("/One/new.txt", os.O_RDONLY)
    assert vfs.read(fh, 0, 100) == b"HELLO world"
    vfs.release(fh)


def test_vfs_values_json_validation(vfs_env):
    vfs, journal, _ = vfs_env
    fh, _ = vfs.open("/One/values.json", os.O_WRONLY | os.O_TRUNC)
    vfs.write(fh, 0, b"[1]")
    with pytest.raises(InvalidValue):
        vfs.flush(fh)
    vfs.truncate("/One/values.json", 0, fh)
    vfs.write(fh, 0, json.dumps({"_name": "One", "k": 1}).encode())
    vfs.flush(fh)
    vfs.release(fh)
    ops = [o for o in journal.ops if o.kind == "put_values"]
    assert len(ops) == 1 and ops[0].values == {"_name": "One", "k": 1}
    assert ops[0].base_values == {"_name": "One"} and ops[0].base_version == 1


def test_vfs_refusals_carry_the_right_errno(vfs_env):
    vfs, journal, _ = vfs_env
    cases = [(lambda: vfs.create("/root-file.txt"), NotPermitted, errno.EPERM),
             (lambda: vfs.open("/RO/r.txt", os.O_WRONLY), Forbidden, errno.EACCES),
             (lambda: vfs.unlink("/RO/r.txt"), Forbidden, errno.EACCES),
             (lambda: vfs.rmdir("/RO"), Forbidden, errno.EACCES),
             (lambda: vfs.rename("/One/a.txt", "/Two/a.txt"), CrossDevice, errno.EXDEV),
             (lambda: vfs.rmdir("/One"), NotEmpty, errno.ENOTEMPTY),
             (lambda: vfs.getattr("/One/missing"), NotFound, errno.ENOENT)]
    for call, cls, code in cases:
        with pytest.raises(cls) as exc:
            call()
        assert exc.value.errno == code
    assert journal.ops == []


def test_vfs_mkdir_rename_and_delete_become_ops(vfs_env):
    vfs, journal, _ = vfs_env
    vfs.mkdir("/Three")
    assert journal.ops[-1].kind == "create_object" and vfs.getattr("/Three").mode & 0o040000
    vfs.mkdir("/One/sub")
    vfs.rename("/One/a.txt", "/One/sub/a.txt")
    assert [n for n, _ in vfs.readdir("/One/sub")] == ["a.txt"]
    vfs.unlink("/One/sub/a.txt")
    vfs.rename("/Two", "/Deux")                                      # renaming an object = its _name
    assert [o.kind for o in journal.ops] == ["create_object", "mkdir", "move", "delete_path", "put_values"]
    assert journal.ops[-1].values["_name"] == "Deux" and "Deux" in dict(vfs.readdir("/"))


def test_vfs_rename_of_a_file_still_being_written_moves_nothing_on_the_server(vfs_env):
    vfs, journal, _ = vfs_env
    fh = vfs.create("/One/draft.txt")
    vfs.write(fh, 0, b"text")
    vfs.rename("/One/draft.txt", "/One/final.txt")
    vfs.release(fh)
    assert [(o.kind, o.path) for o in journal.ops] == [("put_file", "final.txt")]
    fh = vfs.create("/One/tmp.txt")
    vfs.rename("/One/tmp.txt", "/One/a.txt")                          # over a server file
    vfs.release(fh)
    assert [(o.kind, o.path) for o in journal.ops[1:]] == [("delete_path", "a.txt"), ("put_file", "a.txt")]


def test_reader_keeps_streaming_its_version_after_a_new_one_arrives(tmp_path):
    old = os.urandom(4 * MiB)
    source = FakeSource({("o", "f"): old})
    source.gate = threading.Event()
    cache = Cache(tmp_path, quota_bytes=64 * MiB)
    fetcher = Fetcher(source, cache)
    reader = cache.open(("o", "f"), version=1, sha256="v1", size=len(old))
    assert fetcher.read(reader, ReadState(), 0, 1000) == old[:1000]
    newer = cache.open(("o", "f"), version=2, sha256="v2", size=10)   # the new version replaces it
    assert reader.detached and newer is not reader
    source.gate.set()
    assert fetcher.read(reader, ReadState(), 3 * MiB, MiB) == old[3 * MiB:]   # close-to-open
    cache.close(reader)
    assert not reader.data_path.exists() and cache.used == 0
    cache.close(newer)


def test_vfs_renamed_cached_file_keeps_its_bytes_before_the_move_is_applied(vfs_env):
    vfs, journal, _ = vfs_env
    fh, _ = vfs.open("/One/a.txt", os.O_RDONLY)
    assert vfs.read(fh, 0, 10) == b"alpha"
    vfs.release(fh)
    vfs.rename("/One/a.txt", "/One/renamed.txt")
    fh, keep = vfs.open("/One/renamed.txt", os.O_RDONLY)
    assert vfs.read(fh, 0, 10) == b"alpha" and journal.ops[-1].kind == "move"
    vfs.release(fh)


def test_vfs_file_only_in_the_journal_opens_from_its_snapshot(vfs_env, tmp_path):
    vfs, journal, _ = vfs_env
    fh = vfs.create("/Two/new.bin")
    vfs.write(fh, 0, b"snapshot bytes")
    vfs.release(fh)
    vfs.cache.remove("o2", "new.bin")                                  # e.g. a wiped cache
    fh, _ = vfs.open("/Two/new.bin", os.O_RDONLY)
    assert vfs.read(fh, 0, 100) == b"snapshot bytes"
    vfs.release(fh)


def test_incremental_hash_matches_for_sequential_gapped_and_overwritten_writes(tmp_path):
    import hashlib

    from oaiofs.vfs import hashing
    data = bytearray(os.urandom(3 * MiB + 17))
    path = tmp_path / "f"
    path.write_bytes(bytes(data))
    reads: list[tuple[int, int]] = []
    written_back: list[tuple[int, int]] = []

    def read_into(offset, buffer):
        reads.append((offset, len(buffer)))
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.readinto(buffer)

    h = hashing.IncrementalHash(read_into, lambda start, end: written_back.append((start, end)))
    for off in range(0, len(data), 128 * 1024):
        h.feed(off, min(128 * 1024, len(data) - off))
    # the helper hashes whole pieces behind the writer and starts their writeback, before any finish()
    wait_until(lambda: written_back and written_back[-1][1] == 3 * MiB, message="the helper hashed 3 pieces")
    assert all(end - start >= MiB for start, end in written_back)
    assert h.finish(len(data)) == hashlib.sha256(data).hexdigest()
    assert sum(n for o, n in reads) == len(data)                          # every byte read once, no re-hash
    h.feed(len(data) + 10, len(b"after a gap"))                         # gap: hashed from the file at finish
    data += b"\0" * 10 + b"after a gap"
    path.write_bytes(bytes(data))
    assert h.finish(len(data)) == hashlib.sha256(data).hexdigest()
    data[5:8] = b"XYZ"                                                   # overwrite of hashed bytes
    path.write_bytes(bytes(data))
    h.feed(5, 3)
    assert h.finish(len(data)) == hashlib.sha256(data).hexdigest()
    h.truncated(100)                                                     # shrink below the frontier
    del data[100:]
    path.write_bytes(bytes(data))
    assert h.finish(len(data)) == hashlib.sha256(data).hexdigest()
