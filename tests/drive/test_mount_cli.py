"""End-to-end: the drive's commands — mount failures, status, umount waiting, offline mounts."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PASSWORD, wait_until
from tests.drive.helpers import mount_status, server_has

pytestmark = pytest.mark.timeout(180)


def oaiofs(*args: str, password: str | None = PASSWORD, **kw) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("OAIOFS_PASSWORD", None)
    if password is not None:
        env["OAIOFS_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "oaiofs", *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=120, **kw)


def test_mount_refuses_bad_password_and_busy_mountpoints(live_server, make_user, tmp_path, mounted_drive):
    user = make_user("fail")
    mnt = tmp_path / "m"
    mnt.mkdir()
    bad = oaiofs("mount", str(mnt), "--server", live_server.url, "--user", user, "--cache", str(tmp_path / "c"),
                 password="wrong password")
    assert bad.returncode != 0
    assert "password" in bad.stderr and not os.path.ismount(mnt)

    (mnt / "stuff").write_text("x")                                  # a non-empty directory
    busy = oaiofs("mount", str(mnt), "--server", live_server.url, "--user", user)
    assert busy.returncode != 0 and "busy" in busy.stderr

    drive = mounted_drive(live_server, user)                         # an existing mount
    again = oaiofs("mount", str(drive.mountpoint), "--server", live_server.url, "--user", user)
    assert again.returncode != 0 and "busy" in again.stderr and drive.mounted

    nowhere = oaiofs("mount", str(tmp_path / "m2"), "--server", live_server.url, "--user", user)
    assert nowhere.returncode != 0 and "does not exist" in nowhere.stderr


def test_background_mount_status_and_umount_waits(live_server, make_user, api_for, tmp_path):
    user = make_user("cli")
    api = api_for(user)
    oid = api.create_object({"_name": "Cli"})["oaio_id"]
    mnt, cache = tmp_path / "mnt", tmp_path / "cache"
    mnt.mkdir()
    started = oaiofs("mount", str(mnt), "--server", live_server.url, "--user", user, "--cache", str(cache))
    try:
        assert started.returncode == 0, started.stderr
        assert os.path.ismount(mnt)                                  # returned once mounted
        status = oaiofs("status", str(mnt))
        assert status.returncode == 0 and "online" in status.stdout and "cache:" in status.stdout
        doc = json.loads(oaiofs("status", str(mnt), "--json").stdout)
        assert doc["online"] is True and doc["user"] == user and doc["ops"] == []
        assert str(mnt) in oaiofs("status").stdout                   # finds mounts by itself

        payload = os.urandom(8 << 20)
        (mnt / "Cli" / "upload.bin").write_bytes(payload)
        done = oaiofs("umount", str(mnt))
        assert done.returncode == 0, done.stderr
        assert not os.path.ismount(mnt)
        assert server_has(api, oid, "upload.bin", payload)           # umount waited for the upload
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["fusermount", "-uz", str(mnt)])


def test_offline_mount_from_cache(server_factory, tmp_path, mounted_drive):
    server = server_factory()
    user = server.add_user("offline-user")
    from oaiofs.client.api import ApiClient

    api = ApiClient(server.url, user, PASSWORD)
    oid = api.create_object({"_name": "Trip"})["oaio_id"]
    api.put_file(oid, "cached.txt", b"read me on the train")
    api.put_file(oid, "remote.txt", b"x" * (2 << 20))
    cache = tmp_path / "offcache"
    drive = mounted_drive(server, user, cache_dir=cache)
    assert drive.path("Trip", "cached.txt").read_bytes() == b"read me on the train"
    drive.stop()

    server.stop()
    mnt = tmp_path / "offmnt"
    mnt.mkdir()
    started = oaiofs("mount", str(mnt), "--server", server.url, "--user", user, "--cache", str(cache))
    try:
        assert started.returncode == 0, started.stderr
        assert "OFFLINE" in started.stderr
        assert mount_status(mnt)["online"] is False
        assert (mnt / "Trip" / "cached.txt").read_bytes() == b"read me on the train"
        with pytest.raises(OSError) as exc:
            (mnt / "Trip" / "remote.txt").read_bytes()
        assert exc.value.errno == errno.EIO
        (mnt / "Trip" / "written-offline.txt").write_bytes(b"queued")
        wait_until(lambda: any(op["path"] == "written-offline.txt" for op in mount_status(mnt)["ops"]),
                   message="write queued in the journal")
        assert (mnt / "Trip" / "written-offline.txt").read_bytes() == b"queued"

        server.start()                                               # same port, same data
        wait_until(lambda: server_has(api, oid, "written-offline.txt", b"queued"), timeout=60,
                   message="queued write uploaded once online")
        wait_until(lambda: mount_status(mnt)["online"], timeout=60, message="mount back online")
    finally:
        forced = oaiofs("umount", "--force", str(mnt))
        if forced.returncode != 0:
            subprocess.run(["fusermount", "-uz", str(mnt)])


def test_nothing_cached_and_no_server_fails_clearly(tmp_path):
    mnt = tmp_path / "m"
    mnt.mkdir()
    result = oaiofs("mount", str(mnt), "--server", "http://127.0.0.1:9", "--user", "nobody",
                    "--cache", str(tmp_path / "c"))
    assert result.returncode != 0
    assert "unreachable" in result.stderr and "nothing is cached" in result.stderr
    assert not os.path.ismount(mnt)


def test_umount_force_leaves_the_queue_for_the_next_mount(server_factory, tmp_path, mounted_drive):
    from oaiofs.client.api import ApiClient

    server = server_factory()
    user = server.add_user("force-user")
    api = ApiClient(server.url, user, PASSWORD)
    oid = api.create_object({"_name": "Queue"})["oaio_id"]
    cache = tmp_path / "qcache"
    mnt = tmp_path / "qmnt"
    mnt.mkdir()
    assert oaiofs("mount", str(mnt), "--server", server.url, "--user", user, "--cache", str(cache)).returncode == 0
    try:
        server.stop()
        (mnt / "Queue" / "later.txt").write_bytes(b"upload me later")
        wait_until(lambda: mount_status(mnt)["ops"], message="write queued")
        waited = oaiofs("umount", str(mnt), "--timeout", "1")          # cannot finish while offline
        assert waited.returncode != 0 and "pending" in waited.stderr and os.path.ismount(mnt)
        forced = oaiofs("umount", "--force", str(mnt))
        assert forced.returncode == 0 and not os.path.ismount(mnt)
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["fusermount", "-uz", str(mnt)])
    server.start()
    mounted_drive(server, user, cache_dir=cache)                      # the journal resumes
    wait_until(lambda: server_has(api, oid, "later.txt", b"upload me later"), timeout=60,
               message="queued upload applied after remount")


def test_no_xattrs_mount_lists_and_reports_status(live_server, make_user, api_for, tmp_path):
    """``--no-xattrs``: no xattr callbacks, yet ``ls -l``, status, and umount's upload wait still work."""
    user = make_user("noxattr")
    api = api_for(user)
    oid = api.create_object({"_name": "Plain"})["oaio_id"]
    mnt, cache = tmp_path / "mnt", tmp_path / "cache"
    mnt.mkdir()
    started = oaiofs("mount", str(mnt), "--server", live_server.url, "--user", user, "--cache", str(cache),
                     "--no-xattrs")
    try:
        assert started.returncode == 0, started.stderr
        listing = subprocess.run(["ls", "-l", str(mnt)], capture_output=True, text=True, timeout=60)
        assert listing.returncode == 0 and "Plain" in listing.stdout
        with pytest.raises(OSError) as info:
            os.getxattr(mnt, "user.oaio.mount_status")
        assert info.value.errno in (errno.ENOTSUP, errno.ENOSYS)

        doc = json.loads(oaiofs("status", str(mnt), "--json").stdout)      # from the status file
        assert doc["online"] is True and doc["user"] == user
        assert "online" in oaiofs("status", str(mnt)).stdout

        pin = oaiofs("pin", str(mnt / "Plain"))
        assert pin.returncode != 0 and "--no-xattrs" in pin.stderr

        payload = os.urandom(4 << 20)
        (mnt / "Plain" / "data.bin").write_bytes(payload)
        done = oaiofs("umount", str(mnt))
        assert done.returncode == 0, done.stderr
        assert not os.path.ismount(mnt)
        assert server_has(api, oid, "data.bin", payload)                   # umount waited for the upload
        assert oaiofs("status", str(mnt)).returncode != 0                 # nothing stale is reported
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["fusermount", "-uz", str(mnt)])
