"""Unit tests of the journal layer over an in-memory fake server (the real-server tests are
in test_journal_server.py)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from oaiofs.errors import Forbidden, Unavailable
from oaiofs.vfs.journal import Journal, JournalBusy, backoff_delay, read_status
from oaiofs.vfs.opstore import Op
from oaiofs.vfs.opstore import OpStore
from tests.conftest import wait_until
from tests.fakeserver import FakeApi, FakeServer, FakeUploader
from tests.durability.helpers import Recorder

OID = "app⫻alice﹫laptop⁄20261121101500000000"


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


def make_journal(root: Path, server: FakeServer, rec: Recorder, uploader: FakeUploader | None = None,
                 backoff_s: float = 0.01) -> Journal:
    return Journal(root, FakeApi(server), uploader or FakeUploader(server), origin="alice@laptop",
                   backoff_initial_s=backoff_s, backoff_cap_s=backoff_s * 5, **rec.kwargs())


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_submit_is_durable_and_snapshot_is_a_hard_link(tmp_path: Path, server: FakeServer) -> None:
    src = write(tmp_path / "cache-file", b"hello world")
    journal = make_journal(tmp_path / "j", server, Recorder())
    op = journal.submit(Op("put_file", OID, "a.txt", base_version=0), src)
    assert op.id > 0 and op.size == 11
    assert os.stat(op.data_file).st_ino == os.stat(src).st_ino       # O(1): no copy
    journal.close()                                                    # never started: nothing applied
    stored = OpStore(tmp_path / "j").load()
    assert [(o.kind, o.path, o.state, o.data_file) for o in stored] == [("put_file", "a.txt", "pending", op.data_file)]
    assert Path(stored[0].data_file).read_bytes() == b"hello world"
    assert read_status(tmp_path / "j")["ops"][0]["path"] == "a.txt"


def test_the_journal_reports_to_its_listener_and_will_not_start_without_one(tmp_path: Path,
                                                                            server: FakeServer) -> None:
    """The drive builds the journal before the WriteBack that listens to it (issue 19: a listener
    Protocol, not late-bound lambdas): ``set_listener`` wires it; starting without one is refused."""
    journal = Journal(tmp_path / "j", FakeApi(server), FakeUploader(server), origin="alice@laptop",
                      backoff_initial_s=0.01, backoff_cap_s=0.05)
    try:
        op = journal.submit(Op("create_object", OID, values={"_name": "x"}))
        with pytest.raises(ValueError, match="listener"):
            journal.start()
        rec = Recorder()
        journal.set_listener(rec)
        journal.start()
        assert journal.wait(op, timeout=30).state == "done"
        assert [(o.id, o.kind) for o, _doc in rec.applied] == [(op.id, "create_object")]
        assert rec.applied[0][1]["values"]["_name"] == "x" and not rec.failed and not rec.conflicts
    finally:
        journal.close()


def test_ops_of_one_object_apply_in_submit_order(tmp_path: Path, server: FakeServer) -> None:
    rec = Recorder()
    journal = make_journal(tmp_path / "j", server, rec)
    ops = [journal.submit(Op("create_object", OID, values={"_name": "x"})),
           journal.submit(Op("mkdir", OID, "docs")),
           journal.submit(Op("put_file", OID, "docs/a.txt", base_version=0), write(tmp_path / "a", b"A")),
           journal.submit(Op("move", OID, "docs/a.txt", dst="docs/b.txt", base_version=0)),
           journal.submit(Op("put_values", OID, values={"_name": "y"}, base_values={"_name": "x"},
                             base_version=1))]
    journal.start()
    assert journal.wait_idle(timeout=10)
    journal.close()
    kinds = [c[0] for c in server.calls if c[0] not in ("get_object", "patch")]
    assert kinds == ["create_object", "make_dir", "upload", "move", "update_values"]
    assert [o.state for o in ops] == ["done"] * 5
    assert server.objects[OID]["values"] == {"_name": "y"}
    assert server.blobs[(OID, "docs/b.txt")] == b"A"
    assert not rec.conflicts and not rec.failed
    assert not list((tmp_path / "j" / "data").iterdir())              # snapshots removed once applied


def test_chaining_rebases_later_ops_on_this_journal_results(tmp_path: Path, server: FakeServer) -> None:
    FakeApi(server).create_object({"k": 1}, OID)
    rec = Recorder()
    journal = make_journal(tmp_path / "j", server, rec)
    # the drive based all three on what it knew before any was applied
    journal.submit(Op("put_file", OID, "f.txt", base_version=0), write(tmp_path / "1", b"one"))
    journal.submit(Op("put_file", OID, "f.txt", base_version=0), write(tmp_path / "2", b"two"))
    journal.submit(Op("put_values", OID, values={"k": 2}, base_values={"k": 1}, base_version=1))
    journal.start()
    assert journal.wait_idle(timeout=10)
    journal.close()
    assert not rec.conflicts and not rec.failed
    assert server.blobs[(OID, "f.txt")] == b"two"
    assert server.objects[OID]["values"] == {"k": 2}
    assert [c[0] for c in server.calls].count("update_values") == 1   # no conflict round


def test_file_conflict_keeps_both_versions(tmp_path: Path, server: FakeServer) -> None:
    api = FakeApi(server)
    api.create_object({}, OID)
    base = api.put_file(OID, "docs/report.txt", b"v1")["version"]
    rec = Recorder()
    journal = make_journal(tmp_path / "j", server, rec)
    op = journal.submit(Op("put_file", OID, "docs/report.txt", base_version=base), write(tmp_path / "l", b"mine"))
    api.put_file(OID, "docs/report.txt", b"theirs")                   # another device wins the race
    journal.start()
    assert journal.wait(op, timeout=10).state == "conflict"
    journal.close()
    (cop, copy_path), = rec.conflicts
    assert copy_path.startswith("docs/report (conflict alice@laptop ") and copy_path.endswith(").txt")
    assert server.blobs[(OID, "docs/report.txt")] == b"theirs"
    assert server.blobs[(OID, copy_path)] == b"mine"
    assert read_status(tmp_path / "j")["conflicts"][0]["conflict_path"] == copy_path


def test_server_already_holding_our_bytes_is_not_a_conflict(tmp_path: Path, server: FakeServer) -> None:
    api = FakeApi(server)
    api.create_object({}, OID)
    api.put_file(OID, "a.txt", b"same")                                # e.g. applied before a crash
    rec = Recorder()
    journal = make_journal(tmp_path / "j", server, rec)
    op = journal.submit(Op("put_file", OID, "a.txt", base_version=0), write(tmp_path / "l", b"same"))
    journal.start()
    assert journal.wait(op, timeout=10).state == "done"
    journal.close()
    assert not rec.conflicts and len([p for (o, p) in server.blobs if o == OID]) == 1


def test_values_merge_different_keys_and_keep_clashes(tmp_path: Path, server: FakeServer) -> None:
    api = FakeApi(server)
    api.create_object({"a": 1, "b": 1, "c": 1}, OID)
    rec = Recorder()
    journal = make_journal(tmp_path / "j", server, rec)
    merge_op = journal.submit(Op("put_values", OID, values={"a": 2, "b": 1, "c": 1},
                                 base_values={"a": 1, "b": 1, "c": 1}, base_version=1))
    api.update_values(OID, {"a": 1, "b": 3, "c": 1}, mode="replace")  # other device: key b
    journal.start()
    assert journal.wait(merge_op, timeout=10).state == "done"
    assert server.objects[OID]["values"] == {"a": 2, "b": 3, "c": 1}
    clash_op = journal.submit(Op("put_values", OID, values={"a": 2, "b": 3, "c": "mine"},
                                 base_values={"a": 2, "b": 3, "c": 1}, base_version=server.objects[OID]["version"]))
    api.update_values(OID, {"c": "theirs"}, mode="merge")
    assert journal.wait(clash_op, timeout=10).state == "conflict"
    journal.close()
    assert server.objects[OID]["values"]["c"] == "theirs"
    (_, copy_path), = rec.conflicts
    assert copy_path.startswith("values (conflict alice@laptop ") and copy_path.endswith(").json")
    assert json.loads(server.blobs[(OID, copy_path)])["c"] == "mine"


def test_transient_errors_back_off_then_complete(tmp_path: Path, server: FakeServer) -> None:
    FakeApi(server).create_object({}, OID)
    server.fail_next(Unavailable("down"), Unavailable("down"), Unavailable("down"))
    rec = Recorder()
    journal = make_journal(tmp_path / "j", server, rec)
    op = journal.submit(Op("mkdir", OID, "d"))
    journal.start()
    assert journal.wait(op, timeout=10).state == "done"
    assert journal.online
    assert op.attempts == 3
    journal.close()


def test_backoff_doubles_and_is_capped() -> None:
    delays = [backoff_delay(n, 0.5, 30.0) for n in range(1, 12)]
    assert 0.4 <= delays[0] <= 0.6 and 0.8 <= delays[1] <= 1.2
    assert max(delays) <= 30.0 and delays[-1] >= 24.0


def test_forbidden_keeps_bytes_and_reports_failed(tmp_path: Path, server: FakeServer) -> None:
    FakeApi(server).create_object({}, OID)
    server.forbidden.add(OID)
    rec = Recorder()
    journal = make_journal(tmp_path / "j", server, rec)
    op = journal.submit(Op("put_file", OID, "x.bin", base_version=0), write(tmp_path / "x", b"precious"))
    journal.start()
    assert journal.wait(op, timeout=10).state == "failed"
    (fop, err), = rec.failed
    assert isinstance(err, Forbidden) and "forbidden" in fop.error
    assert Path(op.data_file).read_bytes() == b"precious"
    assert [o.id for o in journal.pending()] == [op.id]
    assert journal.status()["failed"][0]["path"] == "x.bin"
    server.forbidden.clear()                                           # rights given back
    assert journal.retry() == 1
    assert journal.wait_idle(timeout=10)
    journal.close()
    assert server.blobs[(OID, "x.bin")] == b"precious"


def test_delete_of_a_changed_file_does_not_delete(tmp_path: Path, server: FakeServer) -> None:
    api = FakeApi(server)
    api.create_object({}, OID)
    base = api.put_file(OID, "a.txt", b"v1")["version"]
    api.put_file(OID, "a.txt", b"v2 from elsewhere")
    rec = Recorder()
    journal = make_journal(tmp_path / "j", server, rec)
    op = journal.submit(Op("delete_path", OID, "a.txt", base_version=base))
    journal.start()
    assert journal.wait(op, timeout=10).state == "failed"
    journal.close()
    assert server.blobs[(OID, "a.txt")] == b"v2 from elsewhere" and rec.failed


def test_restart_resumes_upload_from_offset(tmp_path: Path, server: FakeServer) -> None:
    FakeApi(server).create_object({}, OID)
    data = hashlib.sha256(b"x").digest() * 8                              # 256 bytes, 64 chunks of 4
    patches = 0

    def cut_after_some_chunks(name: str) -> None:
        nonlocal patches
        if name == "patch":
            patches += 1
            if patches == 20:
                server.on_call = None
                raise Unavailable("connection reset")
    server.on_call = cut_after_some_chunks
    first = make_journal(tmp_path / "j", server, Recorder(), FakeUploader(server), backoff_s=60)
    op = first.submit(Op("put_file", OID, "big.bin", base_version=0), write(tmp_path / "big", data))
    first.start()
    wait_until(lambda: op.attempts >= 1, timeout=10, message="first attempt cut")
    first.close()
    stored, = OpStore(tmp_path / "j").load()
    assert stored.upload_url and stored.offset == 19 * 4
    uploader = FakeUploader(server)
    second = make_journal(tmp_path / "j", server, Recorder(), uploader)
    second.start()
    assert second.wait_idle(timeout=10)
    second.close()
    assert server.blobs[(OID, "big.bin")] == data
    assert uploader.sent_bytes == len(data) - 19 * 4


def test_one_journal_per_root(tmp_path: Path, server: FakeServer) -> None:
    journal = make_journal(tmp_path / "j", server, Recorder())
    with pytest.raises(JournalBusy):
        make_journal(tmp_path / "j", server, Recorder())
    journal.close()
    make_journal(tmp_path / "j", server, Recorder()).close()


def test_orphan_snapshots_are_removed_on_start(tmp_path: Path, server: FakeServer) -> None:
    root = tmp_path / "j"
    OpStore(root).close()
    (root / "data" / "deadbeef").write_bytes(b"left by a crash between link and commit")
    make_journal(root, server, Recorder()).close()
    assert not list((root / "data").iterdir())


def test_wait_on_a_reloaded_copy(tmp_path: Path, server: FakeServer) -> None:
    FakeApi(server).create_object({}, OID)
    first = make_journal(tmp_path / "j", server, Recorder())
    first.submit(Op("mkdir", OID, "d"))
    first.close()
    second = make_journal(tmp_path / "j", server, Recorder())
    copy, = second.pending(OID)                                        # what the drive sees after a restart
    second.start()
    assert second.wait(copy, timeout=10).state == "done"
    assert second.wait(copy, timeout=0).state == "done"               # already finished: returns at once
    second.close()


def test_objects_run_in_parallel_but_each_in_order(tmp_path: Path, server: FakeServer) -> None:
    api = FakeApi(server)
    oids = [f"{OID}-{n}" for n in range(3)]
    for oid in oids:
        api.create_object({}, oid)
    journal = make_journal(tmp_path / "j", server, Recorder())
    for i in range(30):                # interleaved submits; each object: a folder chain (each in the last)
        journal.submit(Op("mkdir", oids[i % 3], "/".join(f"d{j:02d}" for j in range(i % 3, i + 1, 3))))
    journal.start()
    assert journal.wait_idle(timeout=20)
    journal.close()
    for oid in oids:
        made = [path for (name, o, path) in server.calls if name == "make_dir" and o == oid]
        assert made == sorted(made, key=len) and len(made) == 10


def test_snapshot_changed_after_queueing_is_uploaded_as_it_is_now(tmp_path: Path, server: FakeServer) -> None:
    """Defence against a drive bug (writing into a hard-linked snapshot): no endless checksum retries."""
    FakeApi(server).create_object({}, OID)
    server.fail_next(Unavailable("down"))
    first = make_journal(tmp_path / "j", server, Recorder(), backoff_s=60)
    op = first.submit(Op("put_file", OID, "a.txt", base_version=0), write(tmp_path / "a", b"old bytes"))
    first.start()
    wait_until(lambda: op.attempts >= 1, timeout=10, message="first attempt (sha256 recorded)")
    first.close()
    Path(op.data_file).write_bytes(b"new bytes, same inode")
    second = make_journal(tmp_path / "j", server, Recorder())
    second.start()
    assert second.wait_idle(timeout=10)
    second.close()
    assert server.blobs[(OID, "a.txt")] == b"new bytes, same inode"


def test_wake_retries_a_backing_off_op_at_once(tmp_path: Path, server: FakeServer) -> None:
    FakeApi(server).create_object({}, OID)
    server.fail_next(Unavailable("down"))
    journal = make_journal(tmp_path / "j", server, Recorder(), backoff_s=600)   # would wait 10 minutes
    op = journal.submit(Op("mkdir", OID, "d"))
    journal.start()
    wait_until(lambda: op.attempts == 1, timeout=10, message="the first attempt to fail")
    assert not journal.online and op.state == "pending"
    journal.wake()                                                     # e.g. the change feed is back
    assert journal.wait(op, timeout=10).state == "done" and journal.online
    journal.close()
    journal.close()                                                    # idempotent


@pytest.mark.parametrize("op", [Op("rename", OID, "a"), Op("put_values", OID), Op("move", OID, "a"),
                                Op("mkdir", OID), Op("put_file", OID, "a"), Op("mkdir", "", "a")])
def test_malformed_ops_are_refused_before_anything_is_recorded(tmp_path: Path, server: FakeServer, op: Op) -> None:
    journal = make_journal(tmp_path / "j", server, Recorder())
    with pytest.raises(ValueError):
        journal.submit(op)
    assert journal.pending() == [] and read_status(tmp_path / "j")["ops"] == []
    journal.close()


def test_a_small_snapshot_is_durable_with_its_record_and_a_power_cut_is_repaired(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small file's bytes go into its op record: the record's COMMIT makes them durable, so the
    snapshot itself is not fsync'd (one fsync per close instead of three); a large one still is.
    What a power cut does to unsynced files — the snapshot emptied (and with it the cache file,
    the same inode), or its directory entry gone — is repaired from the record at the next start,
    and the server gets the right bytes."""
    import oaiofs.vfs.opstore as opstore_mod
    FakeApi(server).create_object({}, OID)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(opstore_mod.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    small = {f"s{i}.txt": os.urandom(100 + i * 1000) for i in range(3)}
    large = os.urandom(opstore_mod.INLINE_MAX_BYTES + 1)
    journal = make_journal(tmp_path / "j", server, Recorder())
    synced.clear()                                          # (making the journal syncs its folders)
    ops = {name: journal.submit(Op("put_file", OID, name, base_version=0, sha256=hashlib.sha256(data).hexdigest()),
                                write(tmp_path / name, data)) for name, data in small.items()}
    assert synced == []                                     # small: no fsync of the snapshot or data/
    big = journal.submit(Op("put_file", OID, "big.bin", base_version=0, sha256=hashlib.sha256(large).hexdigest()),
                         write(tmp_path / "big.bin", large))
    assert len(synced) == 2                                 # large: the file and data/
    journal.close()                                         # never started: all still queued
    # the power cut: one snapshot (and its cache file) lost its bytes, one lost its directory entry
    with open(ops["s0.txt"].data_file, "r+b") as damaged:
        damaged.truncate(0)
    Path(ops["s1.txt"].data_file).unlink()
    # (16 KiB chunks: the fake's default of 4 bytes would commit a progress record 16 000 times)
    second = make_journal(tmp_path / "j", server, Recorder(), uploader=FakeUploader(server, chunk_size=16384))
    try:
        assert sorted(op.path for op in second.restored) == ["s0.txt", "s1.txt"]
        assert (tmp_path / "s0.txt").read_bytes() == small["s0.txt"]      # the cache file's inode too
        second.start()
        assert second.wait_idle(timeout=30)
    finally:
        second.close()
    assert {name: server.blobs[(OID, name)] for name in small} == small
    assert server.blobs[(OID, "big.bin")] == large
    assert big.size == len(large)


def test_a_journal_of_an_older_version_gets_the_data_column(tmp_path: Path, server: FakeServer) -> None:
    """Journals written before small snapshots went into the record have no ``data`` column: it
    is added, and their queued ops (snapshot fsync'd, no copy in the record) still apply."""
    import sqlite3
    root = tmp_path / "j"
    (root / "data").mkdir(parents=True)
    snap = write(root / "data" / "old", b"queued by an older version")
    db = sqlite3.connect(root / "journal.db")
    db.executescript("CREATE TABLE ops (id INTEGER PRIMARY KEY AUTOINCREMENT, oaio_id TEXT NOT NULL, "
                     "state TEXT NOT NULL, created REAL NOT NULL, doc TEXT NOT NULL)")
    op = Op("put_file", OID, "old.txt", size=26, sha256=hashlib.sha256(snap.read_bytes()).hexdigest(),
            base_version=0, data_file=str(snap), id=1)
    db.execute("INSERT INTO ops (oaio_id, state, created, doc) VALUES (?, 'pending', 1.0, ?)", (OID, op.to_json()))
    db.commit()
    db.close()
    FakeApi(server).create_object({}, OID)
    journal = make_journal(root, server, Recorder())
    try:
        assert journal.restored == []
        journal.start()
        assert journal.wait_idle(timeout=30)
    finally:
        journal.close()
    assert server.blobs[(OID, "old.txt")] == b"queued by an older version"
