"""pjdfstest-style checks (written by us) for chmod, utimensat, symlink, readlink and the refused
node types, through a real mount; expected errnos where the drive refuses. Ends on a fresh mount."""
from __future__ import annotations

import ctypes
import errno
import os
import socket
import stat
import time

import pytest

from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(240)

_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def utimensat(path, atime, mtime, flags=0):
    """utimensat(2) with (sec, nsec) pairs, so UTIME_NOW/UTIME_OMIT can be passed; raises OSError."""
    times = (_Timespec * 2)(_Timespec(*atime), _Timespec(*mtime))
    if _libc.utimensat(AT_FDCWD, os.fsencode(path), times, flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))


def _errno_of(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except OSError as err:
        return err.errno
    return 0


def test_posix_checks(live_server, make_user, api_for, mounted_drive, tmp_path):
    owner, reader = make_user("pjd"), make_user("pjdr")
    api = api_for(owner)
    oid = api.create_object({"_name": "P"})["oaio_id"]
    api.put_file(oid, "ro.txt", b"read only")
    api.set_subscription(oid, reader, "r")
    drive = mounted_drive(live_server, owner)
    top = drive.path("P")
    f = top / "f"
    f.write_bytes(b"x")

    # chmod
    for mode in (0o000, 0o777, 0o1755, 0o640):
        os.chmod(f, mode)
        assert stat.S_IMODE(os.stat(f).st_mode) == mode
    os.chmod(f, 0o4755)                                   # set-user-id is not kept (nosuid by design)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o755
    assert _errno_of(os.chmod, top / "missing", 0o644) == errno.ENOENT
    assert _errno_of(os.chmod, top / "f" / "below", 0o644) == errno.ENOTDIR
    os.mkdir(top / "d", 0o700)
    assert stat.S_IMODE(os.stat(top / "d").st_mode) == 0o700
    os.chmod(top / "d", 0o755)
    assert _errno_of(os.chmod, top, 0o700) == 0           # object folders show access rights: ignored
    assert stat.S_IMODE(os.stat(top).st_mode) == 0o755
    assert _errno_of(os.chmod, top / "values.json", 0o600) == 0

    # utimensat
    utimensat(f, (0, UTIME_OMIT), (1_000_000_000, 5))
    assert os.stat(f).st_mtime_ns == 1_000_000_000_000_000_005
    utimensat(f, (5, 0), (0, UTIME_OMIT))                  # atime only: mtime stays
    assert os.stat(f).st_mtime_ns == 1_000_000_000_000_000_005
    utimensat(f, (0, UTIME_OMIT), (0, UTIME_OMIT))         # nothing: no error, no change
    assert os.stat(f).st_mtime_ns == 1_000_000_000_000_000_005
    start = time.time_ns()
    utimensat(f, (0, UTIME_OMIT), (0, UTIME_NOW))
    assert os.stat(f).st_mtime_ns >= start - 10**9
    os.utime(f, ns=(0, -1_000_000_001))                    # before 1970
    assert os.stat(f).st_mtime_ns == -1_000_000_001
    os.utime(top / "d", ns=(0, 1_234_000_000_000_000_000))  # a folder's own mtime
    assert os.stat(top / "d").st_mtime_ns == 1_234_000_000_000_000_000
    assert _errno_of(utimensat, top / "missing", (0, UTIME_NOW), (0, UTIME_NOW)) == errno.ENOENT

    # parent folder mtime/ctime move on create, unlink, rename
    for change in (lambda: (top / "d" / "new").write_bytes(b"1"), lambda: os.rename(top / "d" / "new", top / "d" / "n2"),
                   lambda: os.unlink(top / "d" / "n2"), lambda: os.symlink("x", top / "d" / "l")):
        os.utime(top / "d", ns=(0, 1_000_000_000))
        change()
        wait_until(lambda: (st := os.stat(top / "d")).st_mtime_ns > 1_000_000_000 and st.st_ctime_ns > 1_000_000_000,
                   timeout=30, message="parent folder mtime/ctime moved")

    # symlink / readlink / lstat
    os.symlink("f", top / "l")
    assert os.readlink(top / "l") == "f" and stat.S_ISLNK(os.lstat(top / "l").st_mode)
    assert os.lstat(top / "l").st_size == 1
    assert (top / "l").read_bytes() == b"x"
    longest = "a/" * 2047 + "b"                           # 4095 bytes: PATH_MAX - 1
    os.symlink(longest, top / "long")
    assert os.readlink(top / "long") == longest
    assert _errno_of(os.symlink, "a" * 4096, top / "toolong") == errno.ENAMETOOLONG
    assert _errno_of(os.symlink, "f", top / "l") == errno.EEXIST
    assert _errno_of(os.symlink, "f", top / "f") == errno.EEXIST
    assert _errno_of(os.symlink, "f", top / "missing" / "l") == errno.ENOENT
    assert _errno_of(os.symlink, "x", drive.path("rootlink")) == errno.EPERM    # the root holds objects
    assert _errno_of(os.symlink, "x", top / "values.json") == errno.EEXIST
    assert _errno_of(os.readlink, f) == errno.EINVAL
    assert _errno_of(os.readlink, top / "d") == errno.EINVAL
    assert _errno_of(os.readlink, top / "missing") == errno.ENOENT
    assert _errno_of(os.open, top / "l", os.O_RDONLY | os.O_NOFOLLOW) == errno.ELOOP
    os.symlink("../../../../../etc", top / "escape")        # stored as given; the drive never follows it
    assert os.readlink(top / "escape") == "../../../../../etc"
    os.utime(top / "l", ns=(0, 77), follow_symlinks=False)  # lutimes: the link's own mtime
    assert os.lstat(top / "l").st_mtime_ns == 77 and os.stat(f).st_mtime_ns == -1_000_000_001
    os.rename(top / "l", top / "l2")
    assert os.readlink(top / "l2") == "f"
    os.unlink(top / "escape")
    assert f.exists() and not os.path.lexists(top / "escape")

    # refused node types (EPERM; docs/drive.md says why)
    assert _errno_of(os.link, f, top / "hard") == errno.EPERM
    assert _errno_of(os.mkfifo, top / "fifo") == errno.EPERM
    assert _errno_of(os.mknod, top / "dev", 0o600 | stat.S_IFCHR, os.makedev(1, 3)) == errno.EPERM
    sock = socket.socket(socket.AF_UNIX)
    try:
        assert _errno_of(sock.bind, str(top / "sock")) == errno.EPERM
    finally:
        sock.close()

    # a reader: sees the bits without w, may change nothing
    reader_drive = mounted_drive(live_server, reader)
    ro = reader_drive.path("P", "ro.txt")
    assert stat.S_IMODE(os.stat(ro).st_mode) == 0o444
    assert _errno_of(os.chmod, ro, 0o666) == errno.EPERM
    assert _errno_of(os.utime, ro, ns=(0, 1)) == errno.EPERM
    assert _errno_of(os.utime, ro) in (errno.EACCES, errno.EPERM)   # "now" needs write access
    assert _errno_of(os.symlink, "ro.txt", reader_drive.path("P", "l3")) == errno.EACCES

    def settled():
        files = {e["path"]: e for e in api.get_object(oid)["files"]}
        return "l2" in files and files["f"]["mtime_ns"] == -1_000_000_001 and files["d"]["mode"] == 0o755
    wait_until(settled, timeout=60, message="changes on the server")
    fresh = mounted_drive(live_server, owner)
    top2 = fresh.path("P")
    assert os.stat(top2 / "f").st_mtime_ns == -1_000_000_001
    assert stat.S_IMODE(os.stat(top2 / "f").st_mode) == 0o755
    assert os.readlink(top2 / "l2") == "f" and os.lstat(top2 / "l2").st_mtime_ns == 77
    assert os.readlink(top2 / "long") == longest
    assert sorted(os.listdir(top2)) == sorted(os.listdir(top))
