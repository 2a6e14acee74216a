"""A power cut right after ``close(2)`` (issue 16's one-fsync hand-over, docs/durability.md): a small
file's bytes are durable in its op record, not by an fsync of the snapshot. What the cut can do to
the unsynced files — the snapshot and the cache file (one inode) emptied, or the snapshot's
directory entry lost as well — is simulated between two runs of a real Drive on the real server:
the next start reads the right bytes locally, uploads them, and a drive with an empty cache reads
them back from the server.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from oaiofs.drive import Drive, DriveConfig
from tests.conftest import PASSWORD, ServerProcess

pytestmark = pytest.mark.timeout(300)


def _drive(server: ServerProcess, user: str, cache: Path) -> Drive:
    drive = Drive(DriveConfig(server=server.url, user=user, password=PASSWORD, cache_dir=cache, long_poll_s=2.0))
    drive.start()
    return drive


def _read(drive: Drive, path: str) -> bytes:
    fh, _ = drive.vfs.open(path, os.O_RDONLY)
    try:
        return drive.vfs.read(fh, 0, 1 << 20)
    finally:
        drive.vfs.release(fh)


def test_small_files_survive_a_power_cut_after_close(live_server: ServerProcess, make_user: Any,
                                                     tmp_path: Path) -> None:
    user = make_user("powercut")
    files = {"/obj/emptied.txt": os.urandom(3000), "/obj/unlinked.txt": os.urandom(5000),
             "/obj/intact.txt": os.urandom(7000)}
    drive = _drive(live_server, user, tmp_path / "c1")
    try:
        drive.vfs.mkdir("/obj", 0o755)
        assert drive.journal.wait_idle(60)
        oaio_id = drive.vfs.ns.resolve("/obj").oaio_id
        drive.journal.stop()                       # the server never sees them before the cut
        for path, data in files.items():
            fh = drive.vfs.create(path, 0o644)
            drive.vfs.write(fh, 0, data)
            drive.vfs.release(fh)
        snapshots = {op.path: Path(op.data_file or "") for op in drive.journal.pending(oaio_id)}
        cache_files = {path: drive.cache.data_dir / drive.cache.peek((oaio_id, path[len("/obj/"):]))["token"]
                       for path in files}
    finally:
        drive.stop()
    # the cut: the kernel had not written these bytes back
    with open(cache_files["/obj/emptied.txt"], "r+b") as f:      # the snapshot's inode too
        f.truncate(0)
    with open(cache_files["/obj/unlinked.txt"], "r+b") as f:
        f.truncate(0)
    snapshots["unlinked.txt"].unlink()                            # and its directory entry in data/
    assert snapshots["emptied.txt"].read_bytes() == b""
    again = _drive(live_server, user, tmp_path / "c1")
    try:
        assert sorted(op.path for op in again.journal.restored) == ["emptied.txt", "unlinked.txt"]
        assert {path: _read(again, path) for path in files} == files          # before any upload
        assert again.journal.wait_idle(60), again.journal.status()
        assert again.journal.status()["failed"] == []
    finally:
        again.stop()
    fresh = _drive(live_server, user, tmp_path / "fresh")                     # an empty cache
    try:
        assert {path: _read(fresh, path) for path in files} == files
    finally:
        fresh.stop()
