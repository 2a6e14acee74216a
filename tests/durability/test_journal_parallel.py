"""Issue 16, the journal over the in-memory server: independent ops of one object run at the same
time (a big file's tus upload beside a batch of small files), dependent ones never do, and the
per-object bound holds."""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from oaiofs import protocol
from oaiofs.vfs.journal import Journal
from oaiofs.vfs.opstore import Op
from tests.fakeserver import FakeApi, FakeServer, FakeUploader
from tests.durability.helpers import Recorder

OID = "app⫻alice﹫laptop⁄20261126070000000000"


class BatchApi(FakeApi):
    def __init__(self, server: FakeServer) -> None:
        super().__init__(server)
        self.batched = threading.Event()

    def commit_batch(self, oaio_id: str, files: list[protocol.BatchFile]) -> list[dict[str, Any]]:
        self.s._enter("commit_batch", oaio_id)
        results = [{"status": protocol.BATCH_OK, "path": f.path,
                    "version": self.s.commit(oaio_id, f.path, f.data, f.base_version)["version"]} for f in files]
        self.batched.set()
        return results


def _submit(journal: Journal, tmp: Path, path: str, data: bytes, **kw: Any) -> Op:
    src = tmp / f"src-{len(list(tmp.iterdir()))}"
    src.write_bytes(data)
    return journal.submit(Op("put_file", OID, path, base_version=0, sha256=hashlib.sha256(data).hexdigest(), **kw),
                          src)


def test_a_big_upload_runs_beside_a_batch_of_small_files(tmp_path: Path) -> None:
    server = FakeServer()
    api = BatchApi(server)
    api.create_object({}, OID)
    patches_waited: list[bool] = []

    def hold_the_big_upload(name: str) -> None:        # its chunks wait (up to 30 s) for a batch commit
        if name == "patch" and not patches_waited:
            patches_waited.append(api.batched.wait(30))
    server.on_call = hold_the_big_upload
    src = tmp_path / "src"
    src.mkdir()
    recorder = Recorder()
    journal = Journal(tmp_path / "j", api, FakeUploader(server, chunk_size=64 << 10), origin="alice@laptop",
                      workers=4, per_object=4, **recorder.kwargs())
    _submit(journal, src, "big.bin", b"B" * (600 << 10))               # > the batch limit: tus
    for i in range(8):
        _submit(journal, src, f"small/f{i}", f"small {i}".encode())
    journal.submit(Op("set_meta", OID, "big.bin", mode=0o600))         # waits for the big upload
    journal.start()
    try:
        assert journal.wait_idle(timeout=120), journal.status()
    finally:
        journal.close()
    calls = [(name, path) for name, o, path in server.calls if o == OID]
    assert patches_waited == [True], "the small files' batch did not run while the big upload was in flight"
    assert calls.index(("commit_batch", "")) < max(i for i, c in enumerate(calls) if c == ("patch", "big.bin"))
    assert calls.index(("set_file_meta", "big.bin")) > max(i for i, c in enumerate(calls) if c[1] == "big.bin"
                                                            and c[0] != "set_file_meta")
    assert server.blobs[(OID, "big.bin")] == b"B" * (600 << 10)
    assert all(server.blobs[(OID, f"small/f{i}")] == f"small {i}".encode() for i in range(8))
    # each batch's reports came inside one ``reports`` context (the drive's bookkeeping in one write)
    assert recorder.report_groups == sum(1 for name, o, _ in server.calls if o == OID and name == "commit_batch")


def test_ops_of_one_object_stay_within_the_per_object_bound(tmp_path: Path) -> None:
    server = FakeServer()
    api = FakeApi(server)
    api.create_object({}, OID)
    lock = threading.Lock()
    running = [0]
    most = [0]
    make_dir = api.make_dir

    def counted(oaio_id: str, path: str, *args: Any, **kwargs: Any) -> Any:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            threading.Event().wait(0.02)
            return make_dir(oaio_id, path, *args, **kwargs)
        finally:
            with lock:
                running[0] -= 1
    api.make_dir = counted                                              # type: ignore[method-assign]
    journal = Journal(tmp_path / "j", api, FakeUploader(server), origin="alice@laptop", workers=6, per_object=3,
                      **Recorder().kwargs())
    for i in range(40):
        journal.submit(Op("mkdir", OID, f"d{i:02d}"))
    journal.start()
    try:
        assert journal.wait_idle(timeout=60)
    finally:
        journal.close()
    assert 1 <= most[0] <= 3
    assert sorted(p for n, o, p in server.calls if n == "make_dir") == [f"d{i:02d}" for i in range(40)]


def test_a_move_picked_while_small_files_wait_is_applied(tmp_path: Path) -> None:
    """The worker that picks a move (small files of the object already being sent in a batch)
    applies that move; it does not take the waiting small files as a batch instead and leave the
    move marked running forever."""
    server = FakeServer()
    api = BatchApi(server)
    api.create_object({}, OID)
    release = threading.Event()
    first_batch = [True]

    def hold_the_first_batch(name: str) -> None:
        if name == "commit_batch" and first_batch[0]:
            first_batch[0] = False
            release.wait(30)
    server.on_call = hold_the_first_batch
    src = tmp_path / "src"
    src.mkdir()
    api.make_dir(OID, "d")
    journal = Journal(tmp_path / "j", api, FakeUploader(server), origin="alice@laptop", workers=4,
                      per_object=4, **Recorder().kwargs())
    for i in range(3):
        _submit(journal, src, f"a{i}", b"a")
    journal.start()
    try:
        assert wait_for(lambda: not first_batch[0])
        for i in range(3):                     # queued behind the held batch ...
            _submit(journal, src, f"b{i}", b"b")
        move = journal.submit(Op("move", OID, "d", dst="e"))   # ... and a move a free worker picks
        assert journal.wait(move, timeout=30).state == "done"
        release.set()
        assert journal.wait_idle(timeout=30), journal.status()
    finally:
        release.set()
        journal.close()
    assert set(server.objects[OID]["files"]) >= {"e", "a0", "a1", "a2", "b0", "b1", "b2"}


def wait_for(predicate: Any, timeout: float = 30) -> bool:
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False
