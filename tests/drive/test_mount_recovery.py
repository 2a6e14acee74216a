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
