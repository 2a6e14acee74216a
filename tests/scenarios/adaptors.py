"""One file-system interface, two drives under test: the Vfs called directly and a real FUSE mount.

The scenario suite (tests/scenarios/scenarios.py) is written once against :class:`Fs`
and runs on both adaptors (the idea of rclone's ``vfstest``):

- :class:`VfsFs` builds the mount's real parts (``oaiofs.drive.Drive``: client,
  cache, journal, change feed) against a real server on 127.0.0.1, without FUSE, and
  calls the Vfs the way the kernel does: ``O_APPEND`` writes land at the size ``getattr``
  reported, ``O_TRUNC`` arrives as open + ``truncate(path, 0)``, I/O is cut into 128 KiB
  requests, ``close`` is flush + release. Seconds per scenario.
- :class:`MountFs` is ``oaiofs mount`` in a child process and plain syscalls.

Paths are relative to the drive's root (``"proj/a.txt"``); the first part is an object
folder (``mkdir`` at the root creates an object).
"""
from __future__ import annotations

import json
import os
import stat as stat_mod
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from oaiofs import protocol
from oaiofs.errors import AlreadyExists, NotFound
from oaiofs.drive import Drive, DriveConfig
from tests.conftest import PASSWORD, ServerProcess, wait_until
from tests.drive.conftest import MountedDrive, start_mount

IO = 128 << 10                 # the kernel's request size (max_read / max_write)
SETTLE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Stat:
    """What the scenarios compare of an lstat."""

    kind: str                  # "file" | "dir" | "link"
    size: int
    perm: int                  # st_mode & 0o777
    mtime_ns: int


class Fs(Protocol):
    """The POSIX calls the scenarios make (fd numbers are the adaptor's own)."""

    def open(self, path: str, flags: int, mode: int = 0o644) -> int: ...
    def write(self, fd: int, data: bytes) -> None: ...
    def pwrite(self, fd: int, offset: int, data: bytes) -> None: ...
    def pread(self, fd: int, offset: int, size: int) -> bytes: ...
    def ftruncate(self, fd: int, length: int) -> None: ...
    def fsync(self, fd: int) -> None: ...
    def close(self, fd: int) -> None: ...
    def read_file(self, path: str) -> bytes: ...
    def listdir(self, path: str) -> list[str]: ...
    def lstat(self, path: str) -> Stat: ...
    def exists(self, path: str) -> bool: ...
    def mkdir(self, path: str) -> None: ...
    def rmdir(self, path: str) -> None: ...
    def unlink(self, path: str) -> None: ...
    def rename(self, old: str, new: str) -> None: ...
    def truncate(self, path: str, length: int) -> None: ...
    def chmod(self, path: str, mode: int) -> None: ...
    def utime_ns(self, path: str, atime_ns: int, mtime_ns: int) -> None: ...
    def symlink(self, target: str, path: str) -> None: ...
    def readlink(self, path: str) -> str: ...
    def settle(self) -> None: ...
    def stop(self) -> None: ...


def _kind(mode: int) -> str:
    if stat_mod.S_ISLNK(mode):
        return "link"
    return "dir" if stat_mod.S_ISDIR(mode) else "file"


class VfsFs:
    """The Vfs of a real Drive (no FUSE), driven like the kernel drives it."""

    def __init__(self, server: ServerProcess, user: str, cache_dir: Path) -> None:
        self.drive = Drive(DriveConfig(server=server.url, user=user, password=PASSWORD, cache_dir=cache_dir,
                                       long_poll_s=2.0))
        self.drive.start()
        self.vfs = self.drive.vfs
        self._fds: dict[int, tuple[int, str, int]] = {}     # fd -> (fh, path, flags)
        self._pos: dict[int, int] = {}
        self._next = 3

    @staticmethod
    def _p(path: str) -> str:
        return "/" + path.strip("/")

    def _new_fd(self, fh: int, path: str, flags: int) -> int:
        fd, self._next = self._next, self._next + 1
        self._fds[fd], self._pos[fd] = (fh, path, flags), 0
        return fd

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        p = self._p(path)
        if flags & os.O_CREAT and not self.exists(path):
            return self._new_fd(self.vfs.create(p, mode), p, flags)
        if flags & os.O_CREAT and flags & os.O_EXCL:
            raise AlreadyExists(f"{path} exists")
        fh, _direct = self.vfs.open(p, flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC))
        if flags & os.O_TRUNC:                    # libfuse2: a truncate by path, without the handle
            self.vfs.truncate(p, 0)
        return self._new_fd(fh, p, flags)

    def write(self, fd: int, data: bytes) -> None:
        fh, path, flags = self._fds[fd]
        offset = self.vfs.getattr(path).size if flags & os.O_APPEND else self._pos[fd]
        self.pwrite(fd, offset, data)
        self._pos[fd] = offset + len(data)

    def pwrite(self, fd: int, offset: int, data: bytes) -> None:
        fh = self._fds[fd][0]
        for start in range(0, len(data), IO):
            self.vfs.write(fh, offset + start, data[start:start + IO])

    def pread(self, fd: int, offset: int, size: int) -> bytes:
        fh, path, _flags = self._fds[fd]
        size = min(size, max(0, self.vfs.getattr(path).size - offset))      # the kernel clamps to i_size
        out = bytearray()
        while len(out) < size:
            piece = self.vfs.read(fh, offset + len(out), min(IO, size - len(out)))
            if not piece:
                break
            out += piece
        return bytes(out)

    def ftruncate(self, fd: int, length: int) -> None:
        fh, path, _flags = self._fds[fd]
        self.vfs.truncate(path, length, fh)

    def fsync(self, fd: int) -> None:
        self.vfs.fsync(self._fds[fd][0])

    def close(self, fd: int) -> None:
        fh = self._fds.pop(fd)[0]
        self._pos.pop(fd, None)
        self.vfs.flush(fh)
        self.vfs.release(fh)

    def read_file(self, path: str) -> bytes:
        fd = self.open(path, os.O_RDONLY)
        try:
            return self.pread(fd, 0, 1 << 40)
        finally:
            self.close(fd)

    def listdir(self, path: str) -> list[str]:
        return sorted(name for name, _attr in self.vfs.readdir(self._p(path)) if name not in (".", ".."))

    def lstat(self, path: str) -> Stat:
        attr = self.vfs.getattr(self._p(path))
        return Stat(_kind(attr.mode), attr.size, attr.mode & 0o777, attr.mtime_ns or round(attr.mtime * 1e9))

    def exists(self, path: str) -> bool:
        try:
            self.vfs.getattr(self._p(path))
        except NotFound:
            return False
        return True

    def mkdir(self, path: str) -> None:
        self.vfs.mkdir(self._p(path))

    def rmdir(self, path: str) -> None:
        self.vfs.rmdir(self._p(path))

    def unlink(self, path: str) -> None:
        self.vfs.unlink(self._p(path))

    def rename(self, old: str, new: str) -> None:
        self.vfs.rename(self._p(old), self._p(new))

    def truncate(self, path: str, length: int) -> None:
        self.vfs.truncate(self._p(path), length)

    def chmod(self, path: str, mode: int) -> None:
        self.vfs.chmod(self._p(path), mode)

    def utime_ns(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        self.vfs.utimens(self._p(path), (atime_ns, mtime_ns))

    def symlink(self, target: str, path: str) -> None:
        self.vfs.symlink(target, self._p(path))

    def readlink(self, path: str) -> str:
        return self.vfs.readlink(self._p(path))

    def settle(self) -> None:
        assert self.drive.journal.wait_idle(timeout=SETTLE_TIMEOUT_S), self.drive.journal.status()

    def stop(self) -> None:
        for fd in list(self._fds):
            self.close(fd)
        self.drive.stop()


class MountFs:
    """A real ``oaiofs mount`` and plain syscalls."""

    def __init__(self, server: ServerProcess, user: str, tmp: Path) -> None:
        self.mount: MountedDrive = start_mount(tmp / "mnt", tmp / "cache", server, user)
        self.root = self.mount.mountpoint

    def _p(self, path: str) -> Path:
        return self.root / path.strip("/")

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return os.open(self._p(path), flags, mode)

    def write(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    def pwrite(self, fd: int, offset: int, data: bytes) -> None:
        assert os.pwrite(fd, data, offset) == len(data)

    def pread(self, fd: int, offset: int, size: int) -> bytes:
        return os.pread(fd, size, offset)

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def read_file(self, path: str) -> bytes:
        return self._p(path).read_bytes()

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(self._p(path)))

    def lstat(self, path: str) -> Stat:
        st = os.lstat(self._p(path))
        return Stat(_kind(st.st_mode), st.st_size, st.st_mode & 0o777, st.st_mtime_ns)

    def exists(self, path: str) -> bool:
        return os.path.lexists(self._p(path))

    def mkdir(self, path: str) -> None:
        os.mkdir(self._p(path))

    def rmdir(self, path: str) -> None:
        os.rmdir(self._p(path))

    def unlink(self, path: str) -> None:
        os.unlink(self._p(path))

    def rename(self, old: str, new: str) -> None:
        os.rename(self._p(old), self._p(new))

    def truncate(self, path: str, length: int) -> None:
        os.truncate(self._p(path), length)

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(self._p(path), mode)

    def utime_ns(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        os.utime(self._p(path), ns=(atime_ns, mtime_ns))

    def symlink(self, target: str, path: str) -> None:
        os.symlink(target, self._p(path))

    def readlink(self, path: str) -> str:
        return os.readlink(self._p(path))

    def settle(self) -> None:
        def idle() -> bool:
            doc = json.loads(os.getxattr(self.root, protocol.XATTR_MOUNT_STATUS))
            return not doc.get("ops") and not doc.get("open_for_writing")
        wait_until(idle, timeout=SETTLE_TIMEOUT_S, message="the mount's uploads to finish")

    def stop(self) -> None:
        self.mount.stop()
