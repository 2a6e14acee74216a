"""The FUSE adapter: fusepy callbacks -> :class:`oaiofs.vfs.vfs.Vfs`, and the one errno translation.

The only module that imports ``fuse``. Every callback is a few lines: call the
Vfs, convert the result. :meth:`OaioFuseOps.__call__` turns ``OaioError`` into
``FuseOSError(err.errno)`` and anything unexpected into ``EIO`` with a logged
traceback (fusepy would otherwise answer ``EINVAL``).

fusepy is used with ``raw_fi=True`` (so ``open`` can set ``keep_cache``) and
multithreaded; ``flag_utime_omit_ok`` lets ``touch -a``/``-m`` through.
"""
from __future__ import annotations

import ctypes
import errno
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from fuse import FUSE, FuseOSError, Operations

from .errors import OaioError
from .protocol import XATTR_PREFIX
from .vfs.vfs import Vfs

log = logging.getLogger(__name__)

_UNSUPPORTED_XATTR_NAMESPACES = (b"system.", b"security.", b"trusted.")
_XATTR_PREFIX_BYTES = XATTR_PREFIX.encode()
MAX_IO_BYTES = 128 * 1024          # libfuse2 caps requests at 128 KiB
READAHEAD_KERNEL_BYTES = 1 << 20   # lets the kernel keep several reads in flight


@dataclass(frozen=True)
class FuseOptions:
    """Kernel-side options of a mount."""

    attr_timeout: float = 1.0
    entry_timeout: float = 1.0
    fsname: str = "oaiofs"
    allow_other: bool = False
    debug: bool = False
    xattrs: bool = True            # False: no xattr callbacks at all (libfuse answers ENOSYS)
    # called after every request as observer(op, seconds, failed) (metrics); None: no timing at all
    observer: Callable[[str, float, bool], None] | None = None


class _WorkerThreadStates:
    """Keeps the Python thread state of each libfuse worker thread from one callback to the next.

    libfuse calls in from its own C threads. For such a thread ctypes creates a Python thread
    state on every callback and deletes it on return: a 16 KiB mmap/munmap (with a TLB
    shoot-down on the other cores) per FUSE request, 4–6 % of the drive's CPU on a cold read,
    and every ``threading.local`` is lost between callbacks. One extra ``PyGILState_Ensure``
    per thread, never released, makes ctypes' own release keep the state. libfuse2 ends idle
    workers only beyond ten idle ones, so few states are ever left behind by ended threads;
    :data:`MAX_KEPT` bounds them anyway (later threads take the slow path).
    """

    MAX_KEPT = 256

    def __init__(self) -> None:
        self._marker = threading.local()
        self._lock = threading.Lock()
        self.kept = 0

    def keep(self) -> None:
        """Call at the start of every callback (cheap once the thread's state is kept)."""
        if getattr(self._marker, "kept", False):
            return
        with self._lock:
            if self.kept >= self.MAX_KEPT:
                return
            self.kept += 1
        ctypes.pythonapi.PyGILState_Ensure()
        self._marker.kept = True


_worker_states = _WorkerThreadStates()


class OaioFuseOps(Operations):
    """fusepy operations over a Vfs."""

    use_ns = True                  # stat times and utimens in nanoseconds (UTIME_NOW/OMIT: vfs/metadata.py)
    flag_utime_omit_ok = 1

    def __init__(self, vfs: Vfs, on_destroy: Callable[[], None] | None = None, xattrs: bool = True) -> None:
        self.vfs = vfs
        self.on_destroy = on_destroy
        if not xattrs:
            # fusepy registers only callbacks that are not None: libfuse then answers ENOSYS
            # and the kernel stops sending getxattr/listxattr for this mount
            self.getxattr = self.listxattr = self.setxattr = self.removexattr = None  # type: ignore[assignment]

    def __call__(self, op: str, *args: Any) -> Any:
        _worker_states.keep()
        method = getattr(self, op, None)
        if method is None:
            raise FuseOSError(errno.ENOSYS)
        try:
            return method(*args)
        except FuseOSError:
            raise
        except OaioError as err:
            log.debug("%s%r -> %s (%s)", op, args[:1], errno.errorcode.get(err.errno, err.errno), err.message)
            raise FuseOSError(err.errno) from None
        except OSError as err:
            log.warning("%s%r failed: %s", op, args[:1], err)
            raise FuseOSError(err.errno or errno.EIO) from None
        except Exception:  # noqa: BLE001 - never let fusepy turn a bug into EINVAL
            log.exception("unexpected error in %s%r", op, args[:1])
            raise FuseOSError(errno.EIO) from None

    # --- lifecycle ---
    def destroy(self, path: str) -> None:
        if self.on_destroy is not None:
            self.on_destroy()

    # --- metadata ---
    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        return self.vfs.getattr(path).as_dict(self.vfs.uid, self.vfs.gid)

    def readdir(self, path: str, fh: int) -> list[Any]:
        """Names with their file type only: libfuse2's high-level API passes on nothing else of a
        readdir stat (the kernel asks getattr/lookup for the rest), and each stat field costs."""
        entries: list[Any] = [".", ".."]
        entries.extend((name, {"st_mode": attr.mode}, 0) for name, attr in self.vfs.readdir(path))
        return entries

    def statfs(self, path: str) -> dict[str, int]:
        return self.vfs.statfs()

    def access(self, path: str, amode: int) -> int:
        self.vfs.getattr(path)
        return 0

    # --- files ---
    def open(self, path: str, fi: Any) -> int:
        fh, keep_cache = self.vfs.open(path, fi.flags)
        fi.fh = fh
        fi.keep_cache = 1 if keep_cache else 0
        fi.direct_io = 0
        return 0

    def create(self, path: str, mode: int, fi: Any) -> int:
        fi.fh = self.vfs.create(path, mode)
        fi.direct_io = 0
        return 0

    # read/write register the callbacks with fusepy and serve a plain ``fuse.FUSE``; the drive's
    # _DirectReadFUSE routes both to read_into/write_from instead (no bytes copies)
    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        return self.vfs.read(fi.fh, offset, size)

    def read_into(self, fh: int, offset: int, target: Any) -> int:
        """The hot read path (see :class:`_DirectReadFUSE`)."""
        return self.vfs.read_into(fh, offset, memoryview(target).cast("B"))

    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        return self.vfs.write(fi.fh, offset, data)

    def write_from(self, fh: int, offset: int, source: Any) -> int:
        """The hot write path (see :class:`_DirectReadFUSE`): ``source`` is the kernel's buffer."""
        return self.vfs.write(fh, offset, memoryview(source).cast("B"))

    def truncate(self, path: str, length: int, fi: Any = None) -> None:
        self.vfs.truncate(path, length, fi.fh if fi is not None else None)

    def flush(self, path: str, fi: Any) -> None:
        self.vfs.flush(fi.fh)

    def release(self, path: str, fi: Any) -> None:
        self.vfs.release(fi.fh)

    def fsync(self, path: str, datasync: int, fi: Any) -> None:
        self.vfs.fsync(fi.fh)

    def utimens(self, path: str, times: Any = None) -> None:
        self.vfs.utimens(path, times)

    def chmod(self, path: str, mode: int) -> None:
        self.vfs.chmod(path, mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        """Owners are the mounting user's: accepted and ignored (``cp -a``/``tar`` as that user)."""
        self.vfs.getattr(path)

    # --- namespace ---
    def mkdir(self, path: str, mode: int) -> None:
        self.vfs.mkdir(path, mode)

    def rmdir(self, path: str) -> None:
        self.vfs.rmdir(path)

    def unlink(self, path: str) -> None:
        self.vfs.unlink(path)

    def rename(self, old: str, new: str) -> None:
        self.vfs.rename(old, new)

    def symlink(self, target: str, source: str) -> None:
        """fusepy names them backwards: ``target`` is the new link's path, ``source`` what it points to."""
        self.vfs.symlink(source, target)

    def readlink(self, path: str) -> str:
        return self.vfs.readlink(path)

    # hard links, fifos, sockets and device nodes stay refused: see docs/drive.md
    def link(self, target: str, source: str) -> None:
        raise FuseOSError(errno.EPERM)

    def mknod(self, path: str, mode: int, dev: int) -> None:
        raise FuseOSError(errno.EPERM)

    # --- extended attributes ---
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        if not name.startswith(XATTR_PREFIX):
            raise FuseOSError(foreign_xattr_errno(name.encode("utf-8", "surrogateescape")))
        return self.vfs.xattrs.getxattr(path, name)

    def listxattr(self, path: str) -> list[str]:
        return self.vfs.xattrs.listxattr(path)

    def setxattr(self, path: str, name: str, value: bytes, options: int, position: int = 0) -> None:
        self.vfs.xattrs.setxattr(path, name, value)

    def removexattr(self, path: str, name: str) -> None:
        if not name.startswith(XATTR_PREFIX):
            raise FuseOSError(foreign_xattr_errno(name.encode("utf-8", "surrogateescape")))
        self.vfs.xattrs.removexattr(path, name)


class _ObservedFuseOps(OaioFuseOps):
    """:class:`OaioFuseOps` that reports each request's operation, duration and failure to an observer.

    A separate class so that a mount without metrics keeps the plain ``__call__``."""

    def __init__(self, vfs: Vfs, observer: Callable[[str, float, bool], None],
                 on_destroy: Callable[[], None] | None = None, xattrs: bool = True) -> None:
        super().__init__(vfs, on_destroy, xattrs)
        self._observer = observer

    def __call__(self, op: str, *args: Any) -> Any:
        start = time.perf_counter()
        failed = True
        try:
            result = super().__call__(op, *args)
            failed = False
            return result
        finally:
            self._observer(op, time.perf_counter() - start, failed)


class _DirectReadFUSE(FUSE):
    """fusepy's FUSE, but reads land straight in the kernel's buffer (``preadv``) and writes go from
    it straight to the cache file (``pwrite``): no bytes object, no extra copy, no 128 KiB malloc
    per request. Errors still go through :meth:`OaioFuseOps.__call__`."""

    def read(self, path: Any, buf: Any, size: int, offset: int, fip: Any) -> int:
        target = (ctypes.c_char * size).from_address(ctypes.addressof(buf.contents))
        return self.operations("read_into", fip.contents.fh, offset, target)

    def write(self, path: Any, buf: Any, size: int, offset: int, fip: Any) -> int:
        source = (ctypes.c_char * size).from_address(ctypes.addressof(buf.contents))
        return self.operations("write_from", fip.contents.fh, offset, source)

    def getxattr(self, path: bytes, name: bytes, value: Any, size: int, *args: Any) -> int:
        """Foreign names (``ls -l`` asks for ``security.selinux`` and ``system.posix_acl_*`` per entry)
        are answered here, before any decoding, dispatch or exception."""
        _worker_states.keep()
        if not name.startswith(_XATTR_PREFIX_BYTES):
            return -foreign_xattr_errno(name)
        return super().getxattr(path, name, value, size, *args)


def foreign_xattr_errno(name: bytes) -> int:
    """The errno for an xattr name the drive does not serve.

    ACLs (``system.*``), security labels (``security.*``) and ``trusted.*`` are not supported by
    the drive at all, so they get ENOTSUP, as on a local file system mounted without them. That
    is also what lets ``ls -l`` stop asking: coreutils remembers a device that answered ENOTSUP
    and skips the two or three getxattr round trips per entry for the rest of the listing. Other
    names (``user.*`` that are not ours) simply do not exist: ENODATA.
    """
    return errno.ENOTSUP if name.startswith(_UNSUPPORTED_XATTR_NAMESPACES) else errno.ENODATA


def mount(vfs: Vfs, mountpoint: str, options: FuseOptions | None = None,
          on_destroy: Callable[[], None] | None = None) -> None:
    """Serve ``vfs`` at ``mountpoint`` in the foreground until unmounted."""
    options = options or FuseOptions()
    extra: dict[str, Any] = {}
    if options.allow_other:
        extra["allow_other"] = True
    if options.observer is not None:
        ops: OaioFuseOps = _ObservedFuseOps(vfs, options.observer, on_destroy, xattrs=options.xattrs)
    else:
        ops = OaioFuseOps(vfs, on_destroy, xattrs=options.xattrs)
    _DirectReadFUSE(ops, mountpoint, raw_fi=True, foreground=True,
                    nothreads=False, debug=options.debug, fsname=options.fsname, subtype="oaiofs",
                    big_writes=True, max_read=MAX_IO_BYTES, max_write=MAX_IO_BYTES,
                    max_readahead=READAHEAD_KERNEL_BYTES, attr_timeout=options.attr_timeout,
                    entry_timeout=options.entry_timeout, negative_timeout=0, default_permissions=True,
                    **extra)
    log.info("%s unmounted", os.fspath(mountpoint))
