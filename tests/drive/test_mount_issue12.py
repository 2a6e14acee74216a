"""End-to-end (real server, real FUSE mounts) for issue 12's drive fixes: offline truncating writes,
the offline remount with a conflict, name lengths, folder link counts, ``tail -f`` of a remote append."""
from __future__ import annotations

import errno
import os
import subprocess

import pytest

from oaiofs.client.api import ApiClient
from tests.conftest import PASSWORD, wait_until
from tests.drive.helpers import mount_status, server_has

pytestmark = pytest.mark.timeout(240)


def test_offline_truncating_write_of_uncached_files(server_factory, mounted_drive):
    """``echo x > file`` offline needs no old bytes: it works, uploads once the server is back."""
    server = server_factory()
    user = server.add_user("trunc-offline")
    api = ApiClient(server.url, user, PASSWORD)
    oid = api.create_object({"_name": "Notes"})["oaio_id"]
    api.put_file(oid, "small.txt", b"old small text\n" * 10)
    api.put_file(oid, "big.bin", os.urandom(3 << 20))
    other = os.urandom(2 << 20)
    api.put_file(oid, "other.bin", other)
    drive = mounted_drive(server, user)
    assert sorted(os.listdir(drive.path("Notes"))) == ["big.bin", "other.bin", "small.txt", "values.json"]
    server.stop()
    wait_until(lambda: not mount_status(drive.mountpoint)["online"], timeout=60, message="mount offline")
    shell = subprocess.run(["sh", "-c", f"echo x > '{drive.path('Notes', 'small.txt')}'"], capture_output=True,
                           text=True, timeout=60)
    assert shell.returncode == 0, shell.stderr
    with open(drive.path("Notes", "big.bin"), "w") as fh:                   # open(p, "w") = O_TRUNC
        fh.write("now small\n")
    assert drive.path("Notes", "small.txt").read_bytes() == b"x\n"
    assert drive.path("Notes", "big.bin").read_bytes() == b"now small\n"
    with pytest.raises(OSError) as exc:                                     # old bytes needed: EIO
        with open(drive.path("Notes", "other.bin"), "r+b", buffering=0) as fh:
            fh.seek(5)
            fh.write(b"y")
    assert exc.value.errno == errno.EIO

    server.start()
    wait_until(lambda: server_has(api, oid, "small.txt", b"x\n") and server_has(api, oid, "big.bin", b"now small\n"),
               timeout=90, message="offline writes uploaded")
    fresh = mounted_drive(server, user)                                     # second mount, empty cache
    assert fresh.path("Notes", "small.txt").read_bytes() == b"x\n"
    assert fresh.path("Notes", "big.bin").read_bytes() == b"now small\n"
    assert fresh.path("Notes", "other.bin").read_bytes() == other             # the refused write changed nothing


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    from oaiofs.spawn import oaiofs_argv

    return subprocess.run(oaiofs_argv(*args), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env=dict(os.environ, OAIOFS_PASSWORD=PASSWORD))


def _status_xattr(path) -> str:
    return os.getxattr(path, "user.oaio.status").decode()


def test_offline_edits_on_two_mounts_then_forced_umount_and_offline_remount(server_factory, tmp_path,
                                                                            mounted_drive):
    """Issue 12 item 4, exactly: the file must not stay 'dirty' with nothing pending, and later remote
    edits must appear; the two mounts' edits yield exactly one conflict copy with both versions kept."""
    server = server_factory()
    user = server.add_user("two-offline")
    api = ApiClient(server.url, user, PASSWORD)
    oid = api.create_object({"_name": "Both"})["oaio_id"]
    api.put_file(oid, "f.txt", b"base version\n")
    mounts = {name: (tmp_path / f"m{name}", tmp_path / f"c{name}") for name in "AB"}

    def mount(name: str) -> None:
        mnt, cache = mounts[name]
        mnt.mkdir(exist_ok=True)
        done = _cli("mount", str(mnt), "--server", server.url, "--user", user, "--cache", str(cache),
                    "--poll", "2")
        assert done.returncode == 0, done.stderr

    try:
        for name in "AB":
            mount(name)
            assert (mounts[name][0] / "Both" / "f.txt").read_bytes() == b"base version\n"
        server.stop()
        for name in "AB":
            (mounts[name][0] / "Both" / "f.txt").write_bytes(f"edited on {name}\n".encode())
        for name in "AB":
            wait_until(lambda: mount_status(mounts[name][0])["ops"], message=f"edit queued on {name}")
            forced = _cli("umount", "--force", str(mounts[name][0]))
            assert forced.returncode == 0, forced.stderr
        for name in "AB":
            mount(name)                                                      # offline, from the cache
            assert mount_status(mounts[name][0])["online"] is False
            assert (mounts[name][0] / "Both" / "f.txt").read_bytes() == f"edited on {name}\n".encode()
        server.start()
        for name in "AB":
            wait_until(lambda: mount_status(mounts[name][0])["online"]
                       and not mount_status(mounts[name][0])["ops"], timeout=90, message=f"{name} drained")

        files = {f["path"]: api.get_file(oid, f["path"]) for f in api.get_object(oid)["files"]}
        copies = [p for p in files if p != "f.txt"]
        assert len(copies) == 1 and "conflict" in copies[0], files           # exactly one conflict copy
        assert sorted([files["f.txt"], files[copies[0]]]) == [b"edited on A\n", b"edited on B\n"]
        for name in "AB":                                                    # both mounts converge
            folder = mounts[name][0] / "Both"
            wait_until(lambda: (folder / "f.txt").read_bytes() == files["f.txt"]
                       and _status_xattr(folder / "f.txt") != "dirty", timeout=60,
                       message=f"{name} shows the server's f.txt, not dirty")
            assert " 0 pending, 0 failed" in _cli("status", str(mounts[name][0])).stdout

        api.put_file(oid, "f.txt", b"a later remote edit\n")                # later remote edits appear
        for name in "AB":
            path = mounts[name][0] / "Both" / "f.txt"
            wait_until(lambda: path.read_bytes() == b"a later remote edit\n", timeout=60,
                       message=f"remote edit visible on {name}")
            assert _status_xattr(path) != "dirty"
    finally:
        for mnt, _cache in mounts.values():
            if os.path.ismount(mnt) and _cli("umount", "--force", str(mnt)).returncode != 0:
                subprocess.run(["fusermount", "-uz", str(mnt)])
    fresh = mounted_drive(server, user)                                      # empty cache
    assert (fresh.path("Both", "f.txt")).read_bytes() == b"a later remote edit\n"
    assert sorted(os.listdir(fresh.path("Both"))) == sorted(["f.txt", copies[0], "values.json"])


def _errno_of(call) -> int | None:
    try:
        call()
    except OSError as exc:
        return exc.errno
    return None


def test_long_names_link_counts_and_tail_f_of_a_remote_append(live_server, make_user, api_for, mounted_drive):
    user = make_user("posix")
    api = api_for(user)
    oid = api.create_object({"_name": "Posix"})["oaio_id"]
    api.put_file(oid, "log.txt", b"line 1\n")
    drive = mounted_drive(live_server, user, extra_args=("--attr-timeout", "0.2"))
    obj = drive.path("Posix")
    long = "x" * 256
    checks = {"stat": lambda: os.stat(obj / long), "create": lambda: open(obj / long, "wb"),
              "mkdir": lambda: os.mkdir(obj / long), "mkdir object": lambda: os.mkdir(drive.path(long)),
              "rename": lambda: os.rename(obj / "log.txt", obj / long),
              "symlink": lambda: os.symlink("log.txt", obj / long), "link": lambda: os.link(obj / "log.txt", obj / long)}
    got = {what: _errno_of(call) for what, call in checks.items()}
    assert got == {what: errno.ENAMETOOLONG for what in checks}, got
    assert _errno_of(lambda: os.link(obj / "log.txt", obj / "hard")) == errno.EPERM   # hard links stay refused
    (obj / ("y" * 255)).write_bytes(b"a 255-byte name is fine")

    os.makedirs(obj / "a" / "b")
    os.mkdir(obj / "c")
    (obj / "a" / "f.txt").write_bytes(b"f")
    assert os.stat(obj).st_nlink == 4 and os.stat(obj / "a").st_nlink == 3 and os.stat(obj / "c").st_nlink == 2
    assert os.stat(drive.mountpoint).st_nlink == 3
    found = subprocess.run(["find", str(obj), "-type", "d"], capture_output=True, text=True, timeout=60)
    assert sorted(found.stdout.split()) == sorted(str(p) for p in (obj, obj / "a", obj / "a" / "b", obj / "c"))

    tail = subprocess.Popen(["tail", "-n", "+1", "-s", "0.2", "-f", str(obj / "log.txt")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        assert tail.stdout is not None
        assert tail.stdout.readline() == b"line 1\n"
        api.put_file(oid, "log.txt", b"line 1\nline 2\n")               # another device appends
        lines: list[bytes] = []

        def second_line() -> bool:
            import select
            if select.select([tail.stdout], [], [], 0.5)[0]:
                lines.append(tail.stdout.readline())
            return bool(lines)

        wait_until(second_line, timeout=60, message="tail -f shows the remote append")
        assert lines == [b"line 2\n"]
        api.put_file(oid, "log.txt", b"line 1\nline 2\nline 3\n")
        lines.clear()
        wait_until(second_line, timeout=60, message="tail -f shows the second remote append")
        assert lines == [b"line 3\n"]
    finally:
        tail.kill()
        tail.wait()
    fresh = mounted_drive(live_server, user)                                # read back with an empty cache
    assert fresh.path("Posix", "y" * 255).read_bytes() == b"a 255-byte name is fine"
    assert fresh.path("Posix", "a", "f.txt").read_bytes() == b"f"
    assert os.stat(fresh.path("Posix")).st_nlink == 4
