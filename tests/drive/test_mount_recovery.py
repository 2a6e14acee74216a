"""End-to-end: nothing written through the mount is lost when the mount process dies."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.drive.helpers import server_has

pytestmark = pytest.mark.timeout(120)


def hold_release(fd: int, cwd: Path) -> subprocess.Popen[bytes]:
    """A child that inherits ``fd`` and sleeps: the open file description stays referenced, so
    the writer's close(2) returns (FLUSH) and the kernel never sends the RELEASE. Kill it to end."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], pass_fds=[fd], cwd=cwd)


def end_holders(holders: list[subprocess.Popen[bytes]]) -> None:
    for child in holders:
        child.kill()
        child.wait()


def test_open_file_of_a_killed_mount_is_uploaded_after_remount(live_server, make_user, api_for,
                                                                 mounted_drive, tmp_path):
    user = make_user("crash")
    api = api_for(user)
    oid = api.create_object({"_name": "Crash"})["oaio_id"]
    cache = tmp_path / "crashcache"
    drive = mounted_drive(live_server, user, cache_dir=cache)
    fd = os.open(drive.path("Crash", "unsaved.txt"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"work in progress")
    drive.kill()                                                  # kill -9 with the file still open
    try:
        os.close(fd)
    except OSError:
        pass
    again = mounted_drive(live_server, user, cache_dir=cache)
    wait_until(lambda: server_has(api, oid, "unsaved.txt", b"work in progress"), message="recovered upload")
    assert again.path("Crash", "unsaved.txt").read_bytes() == b"work in progress"


def test_closed_file_survives_kill_and_fusermount(live_server, make_user, api_for, mounted_drive, tmp_path):
    user = make_user("closed")
    api = api_for(user)
    oid = api.create_object({"_name": "Closed"})["oaio_id"]
    cache = tmp_path / "closedcache"
    drive = mounted_drive(live_server, user, cache_dir=cache)
    payload = os.urandom(6 << 20)
    drive.path("Closed", "done.bin").write_bytes(payload)
    drive.stop()                                                  # fusermount -u right after close
    if not server_has(api, oid, "done.bin", payload):
        mounted_drive(live_server, user, cache_dir=cache)         # the journal finishes it on the next mount
        wait_until(lambda: server_has(api, oid, "done.bin", payload), message="upload after remount")


def test_cached_files_survive_kill_and_serve_offline(server_factory, mounted_drive, tmp_path):
    """The cache index is written by its own thread: what a read cached is on disk once the
    file is closed, so a kill -9 and a remount without the server still serve those bytes."""
    from oaiofs.client.api import ApiClient
    from tests.conftest import PASSWORD

    server = server_factory()
    user = server.add_user("killed-cache")
    api = ApiClient(server.url, user, PASSWORD)
    oid = api.create_object({"_name": "Kept"})["oaio_id"]
    big, small = os.urandom(3 << 20), b"small and batched"
    api.put_file(oid, "big.bin", big)
    api.put_file(oid, "small.txt", small)
    cache = tmp_path / "killcache"
    drive = mounted_drive(server, user, cache_dir=cache)
    assert drive.path("Kept", "big.bin").read_bytes() == big          # streamed into the cache
    assert drive.path("Kept", "small.txt").read_bytes() == small      # installed by a batch
    assert drive.path("Kept", "big.bin").read_bytes() == big          # a clean re-open and release
    drive.kill()

    server.stop()
    offline = mounted_drive(server, user, cache_dir=cache)
    assert offline.path("Kept", "big.bin").read_bytes() == big
    assert offline.path("Kept", "small.txt").read_bytes() == small


def test_a_burst_of_closed_files_survives_a_kill_before_their_releases(live_server, make_user, api_for,
                                                                        mounted_drive, tmp_path):
    """close(2) returns once the kernel's FLUSH is answered; the RELEASE that hands a file to the
    journal comes after it, asynchronously, and in a burst of closes it lags behind (docs/durability.md).
    A kill -9 right after the last close therefore leaves files the journal never got: the cache's
    dirty records bring every one of them back at the next mount. Read back through a second mount
    with an empty cache: that is what the server holds."""
    import hashlib
    import random

    user = make_user("burst")
    api = api_for(user)
    oid = api.create_object({"_name": "Burst"})["oaio_id"]
    cache = tmp_path / "burstcache"
    drive = mounted_drive(live_server, user, cache_dir=cache)
    rng = random.Random(4242)
    files = {f"d{i % 7}/f{i:04d}.bin": rng.randbytes(rng.randrange(0, 9000)) for i in range(400)}
    for folder in sorted({name.partition("/")[0] for name in files}):
        drive.path("Burst", folder).mkdir()
    for name, data in files.items():
        with open(drive.path("Burst", name), "wb") as f:
            f.write(data)
    drive.kill()                                                  # right after the last close returned
    again = mounted_drive(live_server, user, cache_dir=cache)
    recovered = again.log().count("local changes from an interrupted mount")
    wait_until(lambda: all(server_has(api, oid, name, data) for name, data in files.items()),
               timeout=90, message="every closed file on the server")
    again.stop()
    fresh = mounted_drive(live_server, user, cache_dir=tmp_path / "emptycache")
    got = {name: hashlib.sha256(fresh.path("Burst", name).read_bytes()).hexdigest() for name in files}
    assert got == {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    assert sorted(p.name for p in fresh.path("Burst").iterdir()) == ["d0", "d1", "d2", "d3", "d4", "d5", "d6",
                                                                    "values.json"]
    print(f"{recovered} of {len(files)} files were recovered from the cache's dirty records")


def test_closed_writes_whose_release_never_came_survive_a_kill(live_server, make_user, api_for, mounted_drive,
                                                               tmp_path):
    """A child process holding an inherited descriptor keeps the kernel from sending the release
    (it comes at the last close of the open file description), while the writer's own close(2)
    has returned: the deterministic form of the lag above. The files' bytes are in the cache but
    not in the journal; the cache records must already say dirty — for a file the server had
    (its first write since), one truncated on open, and one written again after an fsync handed
    it over (a new data file by copy-on-write) — so the next mount uploads them all."""
    user = make_user("heldopen")
    api = api_for(user)
    oid = api.create_object({"_name": "Held"})["oaio_id"]
    api.put_file(oid, "existing.txt", b"0123456789" * 50)
    api.put_file(oid, "truncated.txt", b"the server's old text")
    cache = tmp_path / "heldcache"
    drive = mounted_drive(live_server, user, cache_dir=cache)
    assert drive.path("Held", "existing.txt").read_bytes() == b"0123456789" * 50   # cached, clean
    expected = {"existing.txt": b"CHANGED" + (b"0123456789" * 50)[7:],
                "truncated.txt": b"new text after O_TRUNC",
                "fsynced.txt": b"handed over by fsync; then more"}
    holders = []

    def write_and_close_while_held(name: str, flags: int, chunks: list[bytes], fsync_after_first: bool = False) -> None:
        fd = os.open(drive.path("Held", name), flags, 0o644)
        holders.append(hold_release(fd, tmp_path))
        for i, chunk in enumerate(chunks):
            os.write(fd, chunk)
            if fsync_after_first and i == 0:
                os.fsync(fd)
        os.close(fd)                                  # FLUSH only: the child still holds the description

    try:
        write_and_close_while_held("existing.txt", os.O_WRONLY, [b"CHANGED"])
        write_and_close_while_held("truncated.txt", os.O_WRONLY | os.O_TRUNC, [b"new text after O_TRUNC"])
        write_and_close_while_held("fsynced.txt", os.O_WRONLY | os.O_CREAT, [b"handed over by fsync", b"; then more"],
                                   fsync_after_first=True)
        drive.kill()
    finally:
        end_holders(holders)
    again = mounted_drive(live_server, user, cache_dir=cache)
    wait_until(lambda: all(server_has(api, oid, name, data) for name, data in expected.items()),
               timeout=60, message="every closed write on the server")
    assert {name: again.path("Held", name).read_bytes() for name in expected} == expected
    again.stop()
    fresh = mounted_drive(live_server, user, cache_dir=tmp_path / "emptycache")
    assert {name: fresh.path("Held", name).read_bytes() for name in expected} == expected
    assert sorted(p.name for p in fresh.path("Held").iterdir()) == sorted([*expected, "values.json"])


def test_seeded_edits_closed_before_a_kill_match_a_local_reference(live_server, make_user, api_for, mounted_drive,
                                                                   tmp_path):
    """Seeded random edits (in-place writes, appends, truncates, fsyncs) of cached and new files,
    the same calls made on a local reference folder; about half of the files are closed while a
    child keeps their release away, then the mount is killed. After a remount everything equals
    the reference, on the server and through a second mount with an empty cache.
    ``OAIOFS_RECOVERY_SEED`` picks another history."""
    import random

    from tests.drive.model import env_int

    seed = env_int("OAIOFS_RECOVERY_SEED", 2511)
    rng = random.Random(seed)
    user = make_user("seeded")
    api = api_for(user)
    oid = api.create_object({"_name": "Seeded"})["oaio_id"]
    reference = tmp_path / "reference"
    reference.mkdir()
    names = [f"f{i}.bin" for i in range(14)]
    for name in names[:8]:                                   # files the server had, cached by a read
        data = rng.randbytes(rng.randrange(0, 5000))
        api.put_file(oid, name, data)
        (reference / name).write_bytes(data)
    cache = tmp_path / "seededcache"
    drive = mounted_drive(live_server, user, cache_dir=cache)
    for name in names[:8]:
        assert drive.path("Seeded", name).read_bytes() == (reference / name).read_bytes()
    holders = []
    try:
        for name in rng.sample(names, len(names)):
            flags = rng.choice([os.O_RDWR, os.O_WRONLY | os.O_APPEND, os.O_WRONLY | os.O_TRUNC]) | os.O_CREAT
            fds = [os.open(drive.path("Seeded", name), flags, 0o644), os.open(reference / name, flags, 0o644)]
            if rng.random() < 0.5:                           # its release never comes before the kill
                holders.append(hold_release(fds[0], tmp_path))
            for _ in range(rng.randrange(1, 5)):
                step = rng.choice(["write", "write", "truncate", "fsync"])
                size = os.fstat(fds[1]).st_size
                offset, data = rng.randrange(0, size + 200), rng.randbytes(rng.randrange(1, 3000))
                length = rng.randrange(0, size + 100)
                for fd in fds:
                    if step == "write":
                        os.pwrite(fd, data, offset) if not flags & os.O_APPEND else os.write(fd, data)
                    elif step == "truncate":
                        os.ftruncate(fd, length)
                    else:
                        os.fsync(fd)
            for fd in fds:
                os.close(fd)
        drive.kill()
    finally:
        end_holders(holders)
    expected = {name: (reference / name).read_bytes() for name in names}
    again = mounted_drive(live_server, user, cache_dir=cache)
    wait_until(lambda: all(server_has(api, oid, name, data) for name, data in expected.items()),
               timeout=90, message=f"the reference on the server (seed {seed})")
    again.stop()
    fresh = mounted_drive(live_server, user, cache_dir=tmp_path / "emptycache")
    assert {name: fresh.path("Seeded", name).read_bytes() for name in names} == expected, f"seed {seed}"
    assert sorted(p.name for p in fresh.path("Seeded").iterdir()) == sorted([*names, "values.json"])
