"""End-to-end: nothing written through the mount is lost when the mount process dies."""
from __future__ import annotations

import os

import pytest

from tests.conftest import wait_until
from tests.drive.helpers import server_has

pytestmark = pytest.mark.timeout(120)


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
    import subprocess
    import sys

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
        holders.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], pass_fds=[fd],
                                        cwd=tmp_path))
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
        for child in holders:
            child.kill()
            child.wait()
    again = mounted_drive(live_server, user, cache_dir=cache)
    wait_until(lambda: all(server_has(api, oid, name, data) for name, data in expected.items()),
               timeout=60, message="every closed write on the server")
    assert {name: again.path("Held", name).read_bytes() for name in expected} == expected
    again.stop()
    fresh = mounted_drive(live_server, user, cache_dir=tmp_path / "emptycache")
    assert {name: fresh.path("Held", name).read_bytes() for name in expected} == expected
    assert sorted(p.name for p in fresh.path("Held").iterdir()) == sorted([*expected, "values.json"])
