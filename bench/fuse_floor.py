"""The floor of any drive built on fusepy + libfuse2: a filesystem that keeps everything in memory
and does nothing else (no cache, no journal, no server).

Mounted with the drive's own FUSE options (``oaiofs/fuse_ops.py``: threads, big writes, 128 KiB
reads and writes, 1 s attribute and entry timeouts, no negative cache, ``default_permissions``), a
workload through it costs what the kernel round trips and fusepy's Python dispatch cost. The
``clone_floor`` row of ``bench/many_files.py`` runs the same ``git clone`` through it as through the
drive, so the report shows how much of the drive's time is its own work and which targets no
fusepy filesystem can meet on this machine.

Run as a script (``python bench/fuse_floor.py MOUNTPOINT``): it stays in the foreground until
unmounted (``fusermount -u MOUNTPOINT``).
"""
from __future__ import annotations

import errno
import stat
import sys
import threading
import time
from typing import Any

from fuse import FUSE, FuseOSError, Operations

from oaiofs.fuse_ops import MAX_IO_BYTES, READAHEAD_KERNEL_BYTES


class MemoryFs(Operations):  # type: ignore[misc]
    """Paths -> attributes and bytes, behind one lock."""

    use_ns = True
    flag_utime_omit_ok = True

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.attrs: dict[str, dict[str, Any]] = {"/": self._attr(stat.S_IFDIR | 0o755)}
        self.data: dict[str, bytearray] = {}
        self.next_fh = 0

    @staticmethod
    def _attr(mode: int, size: int = 0) -> dict[str, Any]:
        now = time.time_ns()
        return {"st_mode": mode, "st_nlink": 2 if stat.S_ISDIR(mode) else 1, "st_size": size,
                "st_mtime": now, "st_ctime": now, "st_atime": now}

    def _get(self, path: str) -> dict[str, Any]:
        try:
            return self.attrs[path]
        except KeyError:
            raise FuseOSError(errno.ENOENT) from None

    def _fh(self) -> int:
        self.next_fh += 1
        return self.next_fh

    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        with self.mutex:
            return dict(self._get(path))

    def readdir(self, path: str, fh: Any) -> list[str]:
        prefix = path.rstrip("/") + "/"
        with self.mutex:
            names = [p[len(prefix):] for p in self.attrs if p.startswith(prefix) and "/" not in p[len(prefix):]]
        return [".", "..", *[n for n in names if n]]

    def mkdir(self, path: str, mode: int) -> None:
        with self.mutex:
            self.attrs[path] = self._attr(stat.S_IFDIR | mode)

    def rmdir(self, path: str) -> None:
        with self.mutex:
            self._get(path)
            del self.attrs[path]

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        with self.mutex:
            self.attrs[path] = self._attr(stat.S_IFREG | mode)
            self.data[path] = bytearray()
            return self._fh()

    def open(self, path: str, flags: int) -> int:
        with self.mutex:
            self._get(path)
            return self._fh()

    def read(self, path: str, size: int, offset: int, fh: Any) -> bytes:
        with self.mutex:
            return bytes(self.data.get(path, b"")[offset:offset + size])

    def write(self, path: str, buf: bytes, offset: int, fh: Any) -> int:
        with self.mutex:
            data = self.data.setdefault(path, bytearray())
            data[offset:offset + len(buf)] = buf
            self._get(path)["st_size"] = len(data)
        return len(buf)

    def truncate(self, path: str, length: int, fh: Any = None) -> None:
        with self.mutex:
            data = self.data.setdefault(path, bytearray())
            del data[length:]
            data.extend(b"\0" * (length - len(data)))
            self._get(path)["st_size"] = length

    def chmod(self, path: str, mode: int) -> None:
        with self.mutex:
            attr = self._get(path)
            attr["st_mode"] = (attr["st_mode"] & ~0o7777) | (mode & 0o7777)

    def chown(self, path: str, uid: int, gid: int) -> None:
        pass

    def utimens(self, path: str, times: Any = None) -> None:
        with self.mutex:
            attr = self._get(path)
            if times:
                attr["st_atime"], attr["st_mtime"] = times

    def unlink(self, path: str) -> None:
        with self.mutex:
            self._get(path)
            del self.attrs[path]
            self.data.pop(path, None)

    def rename(self, old: str, new: str) -> None:
        with self.mutex:
            self._get(old)
            for path in sorted(p for p in list(self.attrs) if p == old or p.startswith(old + "/")):
                moved = new + path[len(old):]
                self.attrs[moved] = self.attrs.pop(path)
                if path in self.data:
                    self.data[moved] = self.data.pop(path)

    def symlink(self, target: str, source: str) -> None:
        with self.mutex:
            self.attrs[target] = self._attr(stat.S_IFLNK | 0o777, len(source.encode()))
            self.data[target] = bytearray(source.encode())

    def readlink(self, path: str) -> str:
        with self.mutex:
            return self.data[path].decode()

    def link(self, target: str, source: str) -> None:
        raise FuseOSError(errno.EXDEV)         # as the drive: no hard links

    def flush(self, path: str, fh: Any) -> int:
        return 0

    def release(self, path: str, fh: Any) -> int:
        return 0

    def fsync(self, path: str, datasync: int, fh: Any) -> int:
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": 1 << 24, "f_bfree": 1 << 24,
                "f_bavail": 1 << 24, "f_files": 1 << 24, "f_ffree": 1 << 24, "f_namemax": 255}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: fuse_floor.py MOUNTPOINT", file=sys.stderr)
        return 2
    FUSE(MemoryFs(), argv[0], foreground=True, nothreads=False, fsname="fuse-floor", big_writes=True,
         max_read=MAX_IO_BYTES, max_write=MAX_IO_BYTES, max_readahead=READAHEAD_KERNEL_BYTES, attr_timeout=1.0, entry_timeout=1.0,
         negative_timeout=0, default_permissions=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
