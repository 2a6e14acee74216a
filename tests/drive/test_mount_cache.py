"""End-to-end: lazy ranged fetching, the cache quota, small-file batches, pins and xattrs."""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import wait_until
from tests.drive.helpers import mount_status, server_has, xattr

pytestmark = pytest.mark.timeout(180)
MiB = 1 << 20


def test_large_file_readable_before_fully_fetched(live_server, user_api, mounted_drive):
    user, api = user_api
    oid = api.create_object({"_name": "Big"})["oaio_id"]
    data = os.urandom(64 * MiB)
    api.put_file(oid, "movie.bin", data)
    drive = mounted_drive(live_server, user)
    path = drive.path("Big", "movie.bin")
    with open(path, "rb") as fh:
        assert fh.read(128 * 1024) == data[:128 * 1024]
        # the first block is here while most of the file is not: read-ahead waits for the reader
        used = mount_status(drive.mountpoint)["cache"]["used_bytes"]
        assert used < 32 * MiB, used
        assert xattr(path, "status") == "remote"
        fh.seek(48 * MiB)                                   # a far seek starts a new ranged stream
        assert fh.read(MiB) == data[48 * MiB:49 * MiB]
        fh.seek(0)
        digest = hashlib.sha256()
        for block in iter(lambda: fh.read(4 * MiB), b""):
            digest.update(block)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert xattr(path, "status") == "cached"
    assert mount_status(drive.mountpoint)["cache"]["used_bytes"] >= 64 * MiB


def test_cache_stays_within_its_limit(live_server, user_api, mounted_drive):
    user, api = user_api
    oid = api.create_object({"_name": "Many"})["oaio_id"]
    blobs = {f"f{i}.bin": os.urandom(3 * MiB) for i in range(5)}
    for name, data in blobs.items():
        api.put_file(oid, name, data)
    drive = mounted_drive(live_server, user, cache_size="8M")
    vfs = os.statvfs(drive.mountpoint)
    assert vfs.f_blocks * vfs.f_frsize == 8 * MiB
    for name, data in blobs.items():
        assert drive.path("Many", name).read_bytes() == data
        # eviction runs when the next file is opened and at release (which follows close asynchronously)
        wait_until(lambda: mount_status(drive.mountpoint)["cache"]["used_bytes"] <= 8 * MiB,
                   message="cache back under its quota")
    statuses = [xattr(drive.path("Many", name), "status") for name in blobs]
    assert statuses[-1] == "cached" and statuses[0] == "remote"      # least recently used went first
    assert drive.path("Many", "f0.bin").read_bytes() == blobs["f0.bin"]  # and comes back on demand


def test_small_files_come_in_one_batch(live_server, user_api, mounted_drive):
    user, api = user_api
    ids = []
    for i in range(3):
        oid = api.create_object({"_name": f"S{i}"})["oaio_id"]
        ids.append(oid)
        for j in range(10):
            api.put_file(oid, f"n{j}.txt", f"{i}-{j}".encode())
    drive = mounted_drive(live_server, user)
    assert drive.path("S1", "n3.txt").read_bytes() == b"1-3"
    # one open fetched its neighbours too (same object and the rest of the listing)
    for i in range(3):
        for j in range(10):
            assert xattr(drive.path(f"S{i}", f"n{j}.txt"), "status") == "cached"
    assert drive.path("S2", "n9.txt").read_bytes() == b"2-9"


def test_xattrs_follow_a_file_through_its_upload(live_server, user_api, mounted_drive):
    user, api = user_api
    oid = api.create_object({"_name": "X"})["oaio_id"]
    api.put_file(oid, "a.txt", b"abc")
    drive = mounted_drive(live_server, user)
    path = drive.path("X", "a.txt")
    assert xattr(path, "status") == "remote"
    assert xattr(path, "sha256") == hashlib.sha256(b"abc").hexdigest()
    version = int(xattr(path, "version"))
    path.read_bytes()
    assert xattr(path, "status") == "cached"
    with open(path, "ab") as fh:
        fh.write(b"def")
        fh.flush()
        assert xattr(path, "status") == "dirty"
    # release (and the journal hand-over) follows close(2) asynchronously: dirty -> uploading -> cached
    wait_until(lambda: xattr(path, "status") == "cached" and int(xattr(path, "version")) > version,
               message="upload committed")
    assert xattr(path, "sha256") == hashlib.sha256(b"abcdef").hexdigest()
    assert server_has(api, oid, "a.txt", b"abcdef")
    assert set(os.listxattr(path)) >= {"user.oaio.status", "user.oaio.sha256", "user.oaio.version"}
    with pytest.raises(OSError):
        os.getxattr(path, "user.oaio.nonsense")
    # namespaces the drive does not support answer ENOTSUP (like ext4 without ACLs); other names ENODATA
    for foreign, expected in (("security.selinux", errno.ENOTSUP), ("system.posix_acl_access", errno.ENOTSUP),
                              ("trusted.x", errno.ENOTSUP), ("user.other", errno.ENODATA)):
        with pytest.raises(OSError) as info:
            os.getxattr(path, foreign)
        assert info.value.errno == expected, foreign
    with pytest.raises(OSError) as info:
        os.removexattr(path, "system.posix_acl_access")
    assert info.value.errno == errno.ENOTSUP


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (scripts/install installs it)")
def test_ls_l_stops_asking_for_acls_and_labels(live_server, user_api, mounted_drive, tmp_path):
    """GNU ls asks every entry for its ACL and SELinux label unless the device says ENOTSUP once:
    each question is a FUSE round trip, so a 2000-entry ``ls -l`` would cost thousands of them."""
    user, api = user_api
    for i in range(30):
        api.create_object({"_name": f"obj-{i:02d}"})
    drive = mounted_drive(live_server, user)
    trace = tmp_path / "ls.strace"
    listing = subprocess.run(["strace", "-f", "-e", "trace=getxattr,lgetxattr", "-o", str(trace),
                              "ls", "-l", str(drive.mountpoint)], env={**os.environ, "LC_ALL": "C"},
                             capture_output=True, text=True, check=True)
    assert sum(line.startswith("d") for line in listing.stdout.splitlines()) >= 30
    calls = [line for line in trace.read_text().splitlines() if "getxattr(" in line]
    assert calls, "ls -l asked no xattr at all: the strace filter is wrong"
    assert all("ENOTSUP" in line or "EOPNOTSUPP" in line for line in calls), calls
    assert len(calls) <= 4, calls           # one question per kind, then ls remembers the device


def test_pin_keeps_files_and_unpin_releases_them(live_server, user_api, mounted_drive, tmp_path):
    user, api = user_api
    keep = api.create_object({"_name": "Keep"})["oaio_id"]
    api.put_file(keep, "k1.bin", os.urandom(2 * MiB))
    api.put_file(keep, "sub/k2.bin", os.urandom(2 * MiB))
    other = api.create_object({"_name": "Other"})["oaio_id"]
    for i in range(4):
        api.put_file(other, f"o{i}.bin", os.urandom(2 * MiB))
    cache_dir = tmp_path / "pincache"
    drive = mounted_drive(live_server, user, cache_dir=cache_dir, cache_size="6M")
    out = subprocess.run([sys.executable, "-m", "oaiofs", "pin", str(drive.path("Keep"))],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert xattr(drive.path("Keep", "k1.bin"), "status") == "cached"     # fetched by the pin
    for i in range(4):                                                     # pressure on the cache
        drive.path("Other", f"o{i}.bin").read_bytes()
    assert xattr(drive.path("Keep", "k1.bin"), "status") == "cached"
    assert xattr(drive.path("Keep", "sub", "k2.bin"), "status") == "cached"
    assert [p[0] for p in mount_status(drive.mountpoint)["cache"]["pins"]] == [keep]

    drive.stop()                                                           # pins persist in the cache dir
    drive = mounted_drive(live_server, user, cache_dir=cache_dir, cache_size="6M")
    assert xattr(drive.path("Keep"), "pin") == "1"
    out = subprocess.run([sys.executable, "-m", "oaiofs", "unpin", str(drive.path("Keep"))],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for i in range(4):
        drive.path("Other", f"o{i}.bin").read_bytes()
    assert xattr(drive.path("Keep", "k1.bin"), "status") == "remote"       # evictable again
    assert mount_status(drive.mountpoint)["cache"]["used_bytes"] <= 6 * MiB
