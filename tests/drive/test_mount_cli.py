"""End-to-end: the drive's commands — mount failures, status, umount waiting, offline mounts."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from oaiofs.drive_commands import is_dead_mount
from oaiofs.spawn import oaiofs_argv

from tests.conftest import PASSWORD, wait_until
from tests.drive.helpers import mount_status, server_has

pytestmark = pytest.mark.timeout(180)


def oaiofs(*args: str, password: str | None = PASSWORD, **kw) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("OAIOFS_PASSWORD", None)
    if password is not None:
        env["OAIOFS_PASSWORD"] = password
    return subprocess.run(oaiofs_argv(*args), capture_output=True, text=True, env=env,
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


def test_mount_from_a_folder_holding_an_oaiofs_folder(live_server, make_user, api_for, tmp_path):
    """The background child must import the installed package, not ``./oaiofs`` (``~`` after quickstart)."""
    user = make_user("shadow")
    api = api_for(user)
    oid = api.create_object({"_name": "Home"})["oaio_id"]
    home = tmp_path / "home"
    (home / "oaiofs").mkdir(parents=True)                              # e.g. quickstart's ~/oaiofs mountpoint
    (home / "oaiofs" / "__init__.py").write_text("")                   # worst case: it even looks like a package
    mnt = home / "drive"
    mnt.mkdir()
    script = Path(sys.executable).with_name("oaiofs")                  # the console script a user runs
    env = dict(os.environ, OAIOFS_PASSWORD=PASSWORD)
    started = subprocess.run([str(script), "mount", str(mnt), "--server", live_server.url, "--user", user,
                              "--cache", str(tmp_path / "cache")], cwd=home, env=env, capture_output=True,
                             text=True, stdin=subprocess.DEVNULL, timeout=120)
    try:
        assert started.returncode == 0, started.stderr
        (mnt / "Home" / "hello.txt").write_bytes(b"from home")
        done = subprocess.run([str(script), "umount", str(mnt)], cwd=home, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert server_has(api, oid, "hello.txt", b"from home")
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["fusermount", "-uz", str(mnt)])


def _kill_mount_process(mnt: Path) -> None:
    """kill -9 the background mount process of ``mnt`` (its pid is in the mount registry)."""
    from oaiofs.drive_commands import registry_path

    pid = int(json.loads(registry_path(mnt).read_text())["pid"])
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: is_dead_mount(mnt), timeout=30, message="mountpoint disconnected after kill -9")


def test_killed_mount_is_cleaned_by_umount_and_mount(server_factory, tmp_path):
    """After kill -9: umount cleans the dead mountpoint and says so, mount cleans it itself and mounts,
    and the queued uploads of the killed mount are uploaded by the next one."""
    from oaiofs.client.api import ApiClient

    server = server_factory()
    user = server.add_user("killed-cli")
    api = ApiClient(server.url, user, PASSWORD)
    oid = api.create_object({"_name": "Killed"})["oaio_id"]
    mnt, cache = tmp_path / "kmnt", tmp_path / "kcache"
    mnt.mkdir()
    mount_args = ("mount", str(mnt), "--server", server.url, "--user", user, "--cache", str(cache))
    assert oaiofs(*mount_args).returncode == 0
    try:
        server.stop()
        (mnt / "Killed" / "first.txt").write_bytes(b"queued before the first kill")
        wait_until(lambda: mount_status(mnt)["ops"], message="first write queued")
        _kill_mount_process(mnt)

        status = oaiofs("status", str(mnt))
        assert status.returncode != 0 and "dead mount" in status.stderr
        cleaned = oaiofs("umount", str(mnt))
        assert cleaned.returncode == 0, cleaned.stderr
        assert "dead mount" in cleaned.stdout and not os.path.ismount(mnt)
        os.stat(mnt)                                                     # an ordinary folder again

        again = oaiofs(*mount_args)                                      # offline, from the cache
        assert again.returncode == 0, again.stderr
        assert (mnt / "Killed" / "first.txt").read_bytes() == b"queued before the first kill"
        (mnt / "Killed" / "second.txt").write_bytes(b"queued before the second kill")
        wait_until(lambda: len(mount_status(mnt)["ops"]) >= 2, message="second write queued")
        _kill_mount_process(mnt)

        server.start()
        third = oaiofs(*mount_args)                                      # cleans the dead mount by itself
        assert third.returncode == 0, third.stderr
        assert "dead mount" in third.stderr and os.path.ismount(mnt)
        wait_until(lambda: server_has(api, oid, "first.txt", b"queued before the first kill")
                   and server_has(api, oid, "second.txt", b"queued before the second kill"),
                   timeout=60, message="both killed mounts' queued uploads applied")
        wait_until(lambda: not mount_status(mnt)["ops"], timeout=60, message="journal drained")
        assert oaiofs("umount", str(mnt)).returncode == 0 and not os.path.ismount(mnt)
    finally:
        if os.path.ismount(mnt) or is_dead_mount(mnt):
            subprocess.run(["fusermount", "-uz", str(mnt)])
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert oaiofs("mount", str(fresh), "--server", server.url, "--user", user,
                  "--cache", str(tmp_path / "fresh-cache")).returncode == 0
    try:
        assert (fresh / "Killed" / "first.txt").read_bytes() == b"queued before the first kill"
        assert (fresh / "Killed" / "second.txt").read_bytes() == b"queued before the second kill"
    finally:
        if oaiofs("umount", str(fresh)).returncode != 0:
            subprocess.run(["fusermount", "-uz", str(fresh)])
