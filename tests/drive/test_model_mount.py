"""Model-based test on a real mount (issue 12): tests/drive/model.py's random steps as real syscalls.

The kernel does what the Vfs executor emulates (O_APPEND offsets, asynchronous releases, O_TRUNC
as open + truncate, page writeback of mmap writes); remount is a real unmount + mount on the same
cache folder. Bounded for CI (``OAIOFS_MODEL_MOUNT_OPS``, default 2000 operations in total);
ends with the server holding the reference bytes, no conflict copy, and a second mount with an
empty cache reading them back.
"""
from __future__ import annotations

import mmap
import os
import time
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.drive.conftest import start_mount
from tests.drive.helpers import mount_status
from tests.drive.model import Model, env_int

TOTAL = env_int("OAIOFS_MODEL_MOUNT_OPS", 2000)
pytestmark = pytest.mark.timeout(max(900, TOTAL // 2))
SKIP = frozenset({"rename", "truncate_path"}) if os.environ.get("OAIOFS_MODEL_ALL_STEPS") == "0" else frozenset()


class MountExecutor:
    def __init__(self, server, user, tmp: Path, name: str) -> None:
        self.server, self.user, self.tmp, self.name = server, user, tmp, name
        self.cache = tmp / "cache"
        self.drive = start_mount(tmp / "mnt", self.cache, server, user)
        self.fds: dict[int, int] = {}
        self.mounts = [self.drive]

    def path(self, name: str) -> Path:
        return self.drive.path(self.name, name)

    def open(self, hid: int, name: str, flags: int) -> None:
        self.fds[hid] = os.open(self.path(name), flags, 0o644)

    def pwrite(self, hid: int, offset: int, data: bytes) -> None:
        assert os.pwrite(self.fds[hid], data, offset) == len(data)

    def append(self, hid: int, data: bytes) -> None:
        assert os.write(self.fds[hid], data) == len(data)

    def read(self, hid: int, offset: int, size: int) -> bytes:
        return os.pread(self.fds[hid], size, offset)

    def truncate(self, name: str, hid: int | None, length: int) -> None:
        if hid is None:
            os.truncate(self.path(name), length)
        else:
            os.ftruncate(self.fds[hid], length)

    def fsync(self, hid: int) -> None:
        os.fsync(self.fds[hid])

    def mmap_write(self, hid: int, offset: int, data: bytes) -> None:
        fd = self.fds[hid]
        size = os.fstat(fd).st_size
        with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            m[offset:offset + len(data)] = data
            m.flush()                                   # msync(MS_SYNC)

    def close(self, hid: int) -> None:
        os.close(self.fds.pop(hid))

    def rename(self, old: str, new: str) -> None:
        os.rename(self.path(old), self.path(new))

    def remount(self) -> None:
        self.drive.stop()
        self.drive = start_mount(self.tmp / "mnt", self.cache, self.server, self.user)
        self.mounts.append(self.drive)

    def size(self, name: str) -> int:
        return os.stat(self.path(name)).st_size

    def names(self) -> set[str]:
        return set(os.listdir(self.drive.path(self.name))) - {"values.json"}

    def read_file(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def stop(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()
        for drive in self.mounts:
            drive.stop()


def test_random_histories_on_a_real_mount_match_a_reference(live_server, user_api, tmp_path):
    user, api = user_api
    per_seed = min(TOTAL, 500)
    seed, done, started = env_int("OAIOFS_MODEL_SEED", 1200), 0, time.monotonic()
    while done < TOTAL:
        n = min(per_seed, TOTAL - done)
        name = f"Model{seed}"
        oid = api.create_object({"_name": name})["oaio_id"]
        ex = MountExecutor(live_server, user, tmp_path / f"s{seed}", name)
        try:
            model = Model(seed, ex, remount_weight=0.2, skip=SKIP)
            model.run(n)
            wait_until(lambda: not mount_status(ex.drive.mountpoint)["ops"], timeout=300, message="uploads drained")
            status = mount_status(ex.drive.mountpoint)
            assert not status["conflicts"] and not status["failed"], status
        finally:
            ex.stop()
        want = model.expected()
        files = {f["path"] for f in api.get_object(oid)["files"] if f["kind"] == "file"}
        assert files == set(want), f"seed {seed}: server files {sorted(files)}"
        fresh = start_mount(tmp_path / f"fresh{seed}", tmp_path / f"fresh-cache{seed}", live_server, user)
        try:
            for fname, data in want.items():
                assert fresh.path(name, fname).read_bytes() == data, f"seed {seed}: {fname} via a fresh mount"
        finally:
            fresh.stop()
        done += n
        seed += 1
    print(f"\nmount model: {done} operations, {time.monotonic() - started:.1f}s")
