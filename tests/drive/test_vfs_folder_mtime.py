"""VFS-level tests (fakes, no FUSE): a folder's mtime set by ``tar x`` / ``cp -a`` after its files
survives the late release of a file inside it.

The kernel delivers release() after close() has returned, on another FUSE thread, so
``utimens(folder)`` can run while the release of a new file in it is half done. The server
moves a folder's mtime to "now" when a file is added to it (``objects.touch_parents``), so the
file's ``put_file`` must reach the journal before the folder's ``set_meta`` (the journal applies
the ops of one object in order): else the folder's mtime is "now" on the server and, once the
ops are applied, on the drive too.
"""
from __future__ import annotations

import hashlib
import os
import threading

import pytest

from oaiofs.vfs.cache import Cache
from oaiofs.vfs.fetcher import Fetcher
from oaiofs.vfs.namespace import Namespace
from oaiofs.vfs.opstore import Op
from oaiofs.vfs.vfs import Vfs, VfsOptions
from tests.drive.fakes import FakeJournal, FakeSource, object_doc

MiB = 1 << 20
OLD_NS = 1_300_000_000_987_654_321


@pytest.fixture
def env(tmp_path):
    source = FakeSource({})
    cache = Cache(tmp_path / "cache", quota_bytes=64 * MiB)
    journal = FakeJournal(tmp_path / "cache" / "journal")
    ns = Namespace("me")
    vfs = Vfs(ns, cache, Fetcher(source, cache), journal, VfsOptions())
    ns.set_pending_source(vfs.writeback.pending_ops)
    ns.load([object_doc("o1", "One", {})])
    return vfs, journal


class _SpyLock:
    """Wraps an item's write lock and counts the threads that asked for it (the test holds it)."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._cond = threading.Condition()
        self.waiting = 0

    def __enter__(self) -> None:
        with self._cond:
            self.waiting += 1
            self._cond.notify_all()
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def wait_for_waiters(self, n: int, done: threading.Event) -> None:
        """Until ``n`` threads block on the lock, or ``done`` (the caller needed no lock)."""
        with self._cond:
            assert self._cond.wait_for(lambda: self.waiting >= n or done.is_set(), timeout=30)


def _order(journal: FakeJournal) -> list[tuple[str, str]]:
    return [(op.kind, op.path) for op in journal.ops if op.kind in ("put_file", "set_meta")]


def test_folder_utimens_during_the_release_of_a_new_file_inside_comes_after_its_upload(env):
    """utimens(bin) arrives while release(bin/run.sh) has taken the handle but not yet snapshotted
    the file (it waits for the write lock): the set_meta of bin must still follow the put_file."""
    vfs, journal = env
    vfs.mkdir("/One/bin")
    fh = vfs.create("/One/bin/run.sh", 0o755)
    vfs.write(fh, 0, b"#!/bin/sh\necho run\n")
    vfs.utimens("/One/bin/run.sh", (0, OLD_NS + 1))          # tar: the file's times while it is open
    item = vfs.handles.get(fh).item
    spy = item.write_lock = _SpyLock(item.write_lock)        # type: ignore[assignment]
    released, timed = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run(target, done: threading.Event) -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)
        finally:
            done.set()

    with spy:                                                # hold the file's write lock
        spy.waiting = 0
        releaser = threading.Thread(target=run, args=(lambda: vfs.release(fh), released))
        releaser.start()
        spy.wait_for_waiters(1, released)                    # the release is under way, blocked
        assert not released.is_set()
        setter = threading.Thread(target=run, args=(lambda: vfs.utimens("/One/bin", (0, OLD_NS)), timed))
        setter.start()
        spy.wait_for_waiters(2, timed)                       # done, or waiting to hand the file over
    releaser.join(30)
    setter.join(30)
    assert not errors, errors
    assert _order(journal) == [("put_file", "bin/run.sh"), ("set_meta", "bin")], _order(journal)
    put = journal.ops[-2]
    assert (put.mtime_ns, put.mode) == (OLD_NS + 1, 0o755)
    assert vfs.getattr("/One/bin").mtime_ns == OLD_NS
    assert vfs.status()["open_for_writing"] == 0


def test_folder_utimens_before_the_release_hands_the_file_over_once(env):
    """The release has not started (the kernel sends it later): utimens(bin) snapshots the file
    first; the release then finds its bytes in the journal and sends nothing twice."""
    vfs, journal = env
    vfs.mkdir("/One/bin")
    fh = vfs.create("/One/bin/run.sh", 0o644)
    vfs.write(fh, 0, b"data")
    vfs.utimens("/One/bin", (0, OLD_NS))
    vfs.release(fh)
    assert _order(journal) == [("put_file", "bin/run.sh"), ("set_meta", "bin")], _order(journal)
    assert open(journal.ops[-2].data_file, "rb").read() == b"data"
    assert vfs.getattr("/One/bin").mtime_ns == OLD_NS
    fh = vfs.open("/One/bin/run.sh", os.O_RDONLY)[0]
    assert vfs.read(fh, 0, 100) == b"data"
    vfs.release(fh)


@pytest.mark.parametrize("batch", [False, True])
def test_a_folders_set_meta_reaches_the_server_after_the_commits_of_files_queued_before_it(tmp_path, batch):
    """The journal side of the contract (several workers, a slow upload, small files one by one or
    in a batch commit): a folder's set_meta waits for the file ops queued before it, so no later
    commit of a new file inside moves the folder's mtime on the server again."""
    from oaiofs import protocol
    from oaiofs.vfs.journal import Journal
    from tests.fakeserver import FakeApi, FakeServer, FakeUploader
    from tests.durability.helpers import Recorder

    class BatchApi(FakeApi):
        def commit_batch(self, oaio_id, files):
            self.s._enter("commit_batch", oaio_id)
            return [{"status": protocol.BATCH_OK, "path": f.path,
                     "version": self.s.commit(oaio_id, f.path, f.data, f.base_version)["version"]}
                    for f in files]

    server = FakeServer()
    api = BatchApi(server) if batch else FakeApi(server)
    oid = "app⫻alice﹫laptop⁄20261121101500000000"
    api.create_object({}, oid)
    api.make_dir(oid, "bin")
    commit = server.commit

    def recorded_commit(oaio_id, path, data, base, **kw):
        entry = commit(oaio_id, path, data, base, **kw)
        with server.lock:
            server.calls.append(("commit", oaio_id, path))
        return entry
    server.commit = recorded_commit                          # type: ignore[method-assign]
    journal = Journal(tmp_path / "j", api, FakeUploader(server, chunk_size=64), origin="alice@laptop",
                      workers=4, batch=batch, **Recorder().kwargs())
    names = [f"bin/f{i}" for i in range(6)] + ["bin/big"]
    for i, name in enumerate(names):
        data = tmp_path / f"src{i}"
        data.write_bytes(b"x" * (64 * 40 if name == "bin/big" else 10 + i))   # bin/big: 40 PATCHes
        digest = hashlib.sha256(data.read_bytes()).hexdigest()
        journal.submit(Op("put_file", oid, name, base_version=0, sha256=digest), data)
    journal.submit(Op("set_meta", oid, "bin", mtime_ns=OLD_NS, mtime=OLD_NS / 1e9))
    journal.start()
    try:
        assert journal.wait_idle(timeout=60)
    finally:
        journal.close()
    calls = [(kind, path) for kind, o, path in server.calls if o == oid]
    meta_at = calls.index(("set_file_meta", "bin"))
    committed = [path for kind, path in calls[:meta_at] if kind == "commit"]
    assert sorted(committed) == sorted(names), calls
    assert ("commit_batch", "") in calls[:meta_at] if batch else ("commit_batch", "") not in calls
    assert server.objects[oid]["files"]["bin"]["mtime_ns"] == OLD_NS
