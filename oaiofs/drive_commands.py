"""``oaiofs mount | umount | status | pin | unpin`` — the drive's command line.

``mount`` without ``--foreground`` starts the foreground mount as a child process
(its log goes to ``<cache>/mount.log``) and returns once the mountpoint is mounted,
or fails with the child's reason. Status, pins and progress come from the running
mount through extended attributes (``user.oaio.mount_status`` on the mount root,
``user.oaio.pin`` on any path), so these commands need no credentials. The status
also has a side channel that works with ``--no-xattrs``: the mount rewrites
``<cache>/status.json`` every :data:`STATUS_FILE_INTERVAL_S` and records its cache
folder in a registry file (:func:`registry_path`).
"""
from __future__ import annotations

import argparse
import errno
import getpass
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .protocol import XATTR_MOUNT_STATUS, XATTR_PIN
from .spawn import oaiofs_argv

log = logging.getLogger(__name__)

PASSWORD_ENV = "OAIOFS_PASSWORD"
MOUNT_WAIT_S = 60.0
STATUS_FILE = "status.json"
STATUS_FILE_INTERVAL_S = 0.5
FSTYPE = "fuse.oaiofs"
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def register(subparsers: Any) -> None:
    """Add the drive's sub-commands to the ``oaiofs`` parser."""
    p = subparsers.add_parser("mount", help="mount your oaio objects as a folder")
    p.add_argument("mountpoint", type=Path)
    p.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8470")
    p.add_argument("--user", required=True)
    p.add_argument("--cache", type=Path, help="cache folder (default: per user+server in the user cache dir)")
    p.add_argument("--cache-size", type=parse_size, default="2G", help="cache quota, e.g. 512M, 2G (default 2G)")
    p.add_argument("--foreground", action="store_true", help="serve in this process until unmounted")
    p.add_argument("--attr-timeout", type=float, default=1.0, help="kernel attribute cache seconds (default 1)")
    p.add_argument("--entry-timeout", type=float, default=1.0, help="kernel name cache seconds (default 1)")
    p.add_argument("--poll", type=float, default=20.0, help="change-feed long-poll seconds (default 20)")
    p.add_argument("--allow-other", action="store_true", help="let other users see the mount")
    p.add_argument("--no-xattrs", action="store_true",
                   help="no extended attributes at all (the kernel stops forwarding xattr calls); "
                        "`oaiofs pin`/`unpin` and getfattr do not work")
    p.set_defaults(func=cmd_mount)

    p = subparsers.add_parser("umount", help="unmount, after pending uploads are done")
    p.add_argument("mountpoint", type=Path)
    p.add_argument("--force", action="store_true", help="do not wait: queued uploads resume on the next mount")
    p.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    p.set_defaults(func=cmd_umount)

    p = subparsers.add_parser("status", help="uploads, conflicts, cache use and online state of mounts")
    p.add_argument("mountpoint", type=Path, nargs="?")
    p.add_argument("--json", action="store_true", help="print the raw status document")
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser("pin", help="fetch an object/folder/file and keep it in the cache")
    p.add_argument("path", type=Path)
    p.set_defaults(func=cmd_pin)

    p = subparsers.add_parser("unpin", help="let a pinned path be evicted again")
    p.add_argument("path", type=Path)
    p.set_defaults(func=cmd_unpin)


def parse_size(text: str) -> int:
    """``512M``, ``2G``, ``1.5GiB``, ``1000000`` -> bytes (binary units)."""
    match = _SIZE_RE.match(str(text))
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M, 2G)")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * (1 << (10 * " kmgt".index(unit or " "))))


def default_cache_dir(server: str, user: str) -> Path:
    import platformdirs

    host = re.sub(r"[^A-Za-z0-9.-]+", "_", server.split("://", 1)[-1]).strip("_")
    return Path(platformdirs.user_cache_dir("oaiofs")) / f"{user}@{host}"


def _fail(message: str, code: int = 1) -> int:
    print(f"oaiofs: {message}", file=sys.stderr)
    return code


def is_dead_mount(mountpoint: Path) -> bool:
    """True if ``mountpoint`` is a FUSE mount whose process has gone (kill -9, crash): ENOTCONN."""
    try:
        os.stat(mountpoint)
    except OSError as exc:
        return exc.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    return False


def clean_dead_mount(mountpoint: Path) -> str | None:
    """Detach the dead mount at ``mountpoint`` (``fusermount -u``, else lazily); why not, or None."""
    result = subprocess.run(["fusermount", "-u", str(mountpoint)], capture_output=True, text=True)
    if result.returncode != 0 and is_dead_mount(mountpoint):
        result = subprocess.run(["fusermount", "-uz", str(mountpoint)], capture_output=True, text=True)
    if is_dead_mount(mountpoint):
        return result.stderr.strip() or result.stdout.strip() or "still not connected"
    try:
        registry_path(mountpoint).unlink()
    except OSError:
        pass
    return None


def check_mountpoint(mountpoint: Path) -> str | None:
    """Why ``mountpoint`` cannot be mounted on, or None."""
    if not mountpoint.exists():
        return f"mountpoint {mountpoint} does not exist"
    if not mountpoint.is_dir():
        return f"mountpoint {mountpoint} is not a directory"
    if os.path.ismount(mountpoint):
        return f"mountpoint {mountpoint} is busy: something is already mounted there"
    if any(mountpoint.iterdir()):
        return f"mountpoint {mountpoint} is busy: the directory is not empty"
    return None


# ---------------------------------------------------------------- mount
def cmd_mount(args: argparse.Namespace) -> int:
    mountpoint = args.mountpoint.absolute()
    if is_dead_mount(mountpoint):
        problem = clean_dead_mount(mountpoint)
        if problem:
            return _fail(f"{mountpoint} is a dead mount (its mount process has ended) and cannot be cleaned: "
                         f"{problem}")
        print(f"oaiofs: cleaned up the dead mount at {mountpoint} (its mount process had ended; "
              "its queued changes resume with this mount)", file=sys.stderr)
    problem = check_mountpoint(mountpoint)
    if problem:
        return _fail(problem)
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        if not sys.stdin.isatty():
            return _fail(f"no password: set {PASSWORD_ENV} or run in a terminal")
        password = getpass.getpass(f"password for {args.user} at {args.server}: ")
    cache_dir = (args.cache or default_cache_dir(args.server, args.user)).absolute()
    if args.foreground:
        return _serve(args, mountpoint, cache_dir, password)
    return _spawn(args, mountpoint, cache_dir, password)


def _spawn(args: argparse.Namespace, mountpoint: Path, cache_dir: Path, password: str) -> int:
    """Run the foreground mount as a child; return once it is mounted (0) or has failed."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    log_path = cache_dir / "mount.log"
    argv = oaiofs_argv(*(["-v"] * min(getattr(args, "verbose", 0), 2)), "mount",
                       str(mountpoint), "--server", args.server, "--user", args.user, "--cache", str(cache_dir),
                       "--cache-size", str(args.cache_size), "--attr-timeout", str(args.attr_timeout),
                       "--entry-timeout", str(args.entry_timeout), "--poll", str(args.poll), "--foreground")
    if args.allow_other:
        argv.append("--allow-other")
    if args.no_xattrs:
        argv.append("--no-xattrs")
    with open(log_path, "ab") as logfile:
        start = logfile.tell()
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile,
                                 env=dict(os.environ, **{PASSWORD_ENV: password}), start_new_session=True)
    deadline = time.monotonic() + MOUNT_WAIT_S
    while time.monotonic() < deadline:
        if os.path.ismount(mountpoint):
            status = read_status(mountpoint)
            if status is not None and not status.get("online", True):
                print(f"oaiofs: {args.server} is unreachable: mounted OFFLINE from the cache at {mountpoint}; "
                      "changes are queued until it is back", file=sys.stderr)
            else:
                print(f"oaiofs: mounted {args.user}@{args.server} at {mountpoint} (pid {child.pid})")
            return 0
        code = child.poll()
        if code is not None:
            reason = _log_tail(log_path, start)
            return _fail(reason or f"mount process exited with status {code}", code or 1)
        time.sleep(0.05)
    child.terminate()
    return _fail(f"{mountpoint} was not mounted within {MOUNT_WAIT_S:.0f}s; see {log_path}")


def _log_tail(path: Path, start: int) -> str:
    """The messages our child wrote (its own 'oaiofs:' lines first)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    own = [line.removeprefix("oaiofs: ") for line in lines if line.startswith("oaiofs: ")]
    return "\n".join(own or lines[-5:])


def _serve(args: argparse.Namespace, mountpoint: Path, cache_dir: Path, password: str) -> int:
    """Mount in this process until the kernel unmounts it."""
    from .errors import OaioError, Unauthorized, Unavailable
    from .fuse_ops import FuseOptions, mount
    from .vfs.drive import Drive, DriveConfig
    from .vfs.journal import JournalBusy

    config = DriveConfig(server=args.server, user=args.user, password=password, cache_dir=cache_dir,
                         cache_bytes=args.cache_size, long_poll_s=args.poll)
    try:
        drive = Drive(config)
    except JournalBusy:
        return _fail(f"the cache {cache_dir} is in use by another mount")
    try:
        online = drive.start()
    except Unauthorized:
        drive.stop()
        return _fail(f"login refused: wrong user name or password for {args.user} at {args.server}", 2)
    except Unavailable:
        drive.stop()
        return _fail(f"server {args.server} is unreachable and nothing is cached in {cache_dir}", 3)
    except OaioError as err:
        drive.stop()
        return _fail(f"cannot mount: {err.message}")
    if not online:
        log.warning("server %s unreachable: mounting OFFLINE from the cache in %s", args.server, cache_dir)
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            drive.stop()

    options = FuseOptions(attr_timeout=args.attr_timeout, entry_timeout=args.entry_timeout,
                          fsname=f"oaiofs:{args.user}", allow_other=args.allow_other,
                          xattrs=not args.no_xattrs)
    publisher = StatusPublisher(drive.vfs.status, mountpoint, cache_dir)
    publisher.start()
    try:
        mount(drive.vfs, str(mountpoint), options, on_destroy=stop)
    except RuntimeError as exc:
        stop()
        return _fail(f"cannot mount {mountpoint}: {exc}")
    finally:
        publisher.stop()
    stop()
    return 0


# ---------------------------------------------------------------- status side channel
def registry_path(mountpoint: Path) -> Path:
    """Where the mount at ``mountpoint`` records its cache folder (per user runtime dir)."""
    import hashlib

    import platformdirs

    digest = hashlib.sha256(str(mountpoint.absolute()).encode()).hexdigest()[:32]
    return Path(platformdirs.user_runtime_dir("oaiofs")) / "mounts" / f"{digest}.json"


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class StatusPublisher:
    """Rewrites ``<cache>/status.json`` while mounted and registers the cache folder of the mountpoint."""

    def __init__(self, status: Any, mountpoint: Path, cache_dir: Path) -> None:
        self.status = status
        self.mountpoint = mountpoint
        self.status_path = cache_dir / STATUS_FILE
        self.registry = registry_path(mountpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-file", daemon=True)

    def start(self) -> None:
        try:
            self.registry.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(self.registry, json.dumps(
                {"mountpoint": str(self.mountpoint), "cache_dir": str(self.status_path.parent),
                 "pid": os.getpid()}))
        except OSError as exc:
            log.warning("cannot register the mount in %s: %s", self.registry, exc)
        self.publish()
        self._thread.start()

    def publish(self) -> None:
        try:
            doc = dict(self.status(), pid=os.getpid(), written_at=time.time())
            _write_atomically(self.status_path, json.dumps(doc, default=str))
        except Exception:  # noqa: BLE001 - the status file is best effort; the mount goes on
            log.warning("cannot write %s", self.status_path, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        for path in (self.registry, self.status_path):
            try:
                os.unlink(path)
            except OSError:
                pass

    def _run(self) -> None:
        while not self._stop.wait(STATUS_FILE_INTERVAL_S):
            self.publish()


# ---------------------------------------------------------------- status helpers
def read_status(mountpoint: Path) -> dict[str, Any] | None:
    """The status document of the mount at ``mountpoint`` (None if it is not an oaiofs mount).

    From the root's xattr, or (mounted with ``--no-xattrs``) from the status file the mount rewrites."""
    try:
        return json.loads(os.getxattr(mountpoint, XATTR_MOUNT_STATUS))
    except (OSError, ValueError):
        pass
    return read_status_file(mountpoint)


def read_status_file(mountpoint: Path) -> dict[str, Any] | None:
    """The side-channel status of a live mount at ``mountpoint``, or None."""
    try:
        entry = json.loads(registry_path(mountpoint).read_text(encoding="utf-8"))
        doc = json.loads((Path(entry["cache_dir"]) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if doc.get("pid") != entry.get("pid") or not _alive(int(entry["pid"])) or not os.path.ismount(mountpoint):
        return None
    return doc


def _fresh_status(mountpoint: Path) -> dict[str, Any] | None:
    """The status, and from the status file only once it was rewritten after this call began."""
    since = time.time()
    deadline = time.monotonic() + 10 * STATUS_FILE_INTERVAL_S
    status = read_status(mountpoint)
    while status is not None and status.get("written_at", since) < since and time.monotonic() < deadline:
        time.sleep(STATUS_FILE_INTERVAL_S / 5)
        status = read_status(mountpoint)
    return status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def oaiofs_mounts() -> list[Path]:
    """Mountpoints of oaiofs file systems (from /proc/mounts)."""
    out = []
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == FSTYPE:
                    out.append(Path(parts[1].replace("\\040", " ")))
    except OSError:
        pass
    return out


def _upload_progress(status: dict[str, Any]) -> tuple[int, int, int]:
    """(ops pending, bytes done, bytes total) of the queued uploads."""
    ops = status.get("ops", [])
    total = sum(int(o.get("size") or 0) for o in ops if o.get("kind") == "put_file")
    done = sum(int(o.get("offset") or 0) for o in ops if o.get("kind") == "put_file")
    return len(ops), done, total


# ---------------------------------------------------------------- umount
def cmd_umount(args: argparse.Namespace) -> int:
    mountpoint = args.mountpoint.absolute()
    if is_dead_mount(mountpoint):
        problem = clean_dead_mount(mountpoint)
        if problem:
            return _fail(f"cannot clean the dead mount at {mountpoint}: {problem}")
        print(f"oaiofs: {mountpoint} was a dead mount (its mount process had ended); cleaned it up "
              "(queued changes resume on the next mount)")
        return 0
    if not os.path.ismount(mountpoint):
        return _fail(f"{mountpoint} is not mounted")
    if not args.force:
        code = _wait_for_uploads(mountpoint, args.timeout)
        if code:
            return code
    result = subprocess.run(["fusermount", "-u", str(mountpoint)], capture_output=True, text=True)
    if result.returncode != 0:
        return _fail(f"cannot unmount {mountpoint}: {result.stderr.strip() or result.stdout.strip()}")
    print(f"oaiofs: unmounted {mountpoint}" + (" (queued changes resume on the next mount)" if args.force else ""))
    return 0


def _wait_for_uploads(mountpoint: Path, timeout: float | None) -> int:
    from tqdm import tqdm

    status = _fresh_status(mountpoint)
    if status is None:
        return 0
    pending, done, total = _upload_progress(status)
    if not pending:
        return 0
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = tqdm(total=total or None, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
               desc=f"uploading ({pending} pending)", file=sys.stderr)
    try:
        while pending:
            if deadline is not None and time.monotonic() > deadline:
                bar.close()
                return _fail(f"{pending} changes still pending after {timeout}s; not unmounted "
                             "(use --force to unmount and upload them on the next mount)")
            if not status.get("online", True):
                bar.set_description(f"offline, waiting ({pending} pending)")
            time.sleep(0.25)
            status = read_status(mountpoint) or {}
            pending, done, total = _upload_progress(status)
            bar.total = max(total, bar.n) or None
            bar.n = done
            bar.set_description(f"uploading ({pending} pending)")
            bar.refresh()
    except KeyboardInterrupt:
        bar.close()
        return _fail("interrupted: still mounted, uploads continue", 130)
    bar.close()
    failed = status.get("failed", [])
    if failed:
        print(f"oaiofs: {len(failed)} change(s) failed and are kept in the cache (see 'oaiofs status')",
              file=sys.stderr)
    return 0


# ---------------------------------------------------------------- status
def cmd_status(args: argparse.Namespace) -> int:
    mounts = [args.mountpoint.absolute()] if args.mountpoint else oaiofs_mounts()
    if not mounts:
        return _fail("no oaiofs mount found")
    code = 0
    for mountpoint in mounts:
        status = read_status(mountpoint)
        if status is None and is_dead_mount(mountpoint):
            code = _fail(f"{mountpoint} is a dead mount (its mount process has ended); "
                         "`oaiofs mount` or `oaiofs umount` cleans it up")
            continue
        if status is None:
            code = _fail(f"{mountpoint} is not a mounted oaiofs drive")
            continue
        if args.json:
            print(json.dumps(dict(status, mountpoint=str(mountpoint)), indent=2))
        else:
            print(format_status(mountpoint, status))
    return code


def format_status(mountpoint: Path, status: dict[str, Any]) -> str:
    """The human-readable status of one mount."""
    cache = status.get("cache", {})
    lines = [f"{mountpoint}: {status.get('user', '?')}@{status.get('server', '?')} — "
             f"{'online' if status.get('online') else 'OFFLINE'}",
             f"  cache: {_human(cache.get('used_bytes', 0))} of {_human(cache.get('quota_bytes', 0))} used, "
             f"{len(cache.get('pins', []))} pinned, {status.get('objects', 0)} objects"]
    ops = status.get("ops", [])
    lines.append(f"  pending: {len(ops)}" + ("" if ops else " (all changes are on the server)"))
    for op in ops:
        progress = ""
        if op.get("kind") == "put_file":
            progress = f" {_human(op.get('offset', 0))}/{_human(op.get('size', 0))}"
        err = f" — last error: {op['error']}" if op.get("error") else ""
        target = f"{op.get('oaio_id')}/{op.get('path')}"
        lines.append(f"    [{op.get('state')}] {op.get('kind')} {target}{progress}{err}")
    for op in status.get("failed", []):
        lines.append(f"  FAILED: {op.get('kind')} {op.get('oaio_id')}/{op.get('path')}: {op.get('error')} "
                     "(local bytes kept)")
    for conflict in status.get("conflicts", []):
        lines.append(f"  conflict: {conflict.get('oaio_id')}/{conflict.get('path')} -> "
                     f"{conflict.get('conflict_path')}")
    return "\n".join(lines)


def _human(n: int | float) -> str:
    n = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


# ---------------------------------------------------------------- pin / unpin
_NO_XATTRS = (errno.ENOTSUP, errno.ENOSYS)


def _no_xattrs_message(verb: str, path: Path) -> str:
    return (f"cannot {verb} {path}: the drive was mounted with --no-xattrs; "
            f"remount without --no-xattrs to {verb}")


def _set_pin(path: Path, pinned: bool) -> int:
    """Ask the mount (through the ``user.oaio.pin`` xattr) to pin or release ``path``."""
    verb = "pin" if pinned else "unpin"
    try:
        os.setxattr(path, XATTR_PIN, b"1" if pinned else b"0")
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return _fail(_no_xattrs_message(verb, path))
        return _fail(f"cannot {verb} {path}: {exc.strerror}")
    print(f"oaiofs: pinned {path} (fetched and kept in the cache)" if pinned else f"oaiofs: unpinned {path}")
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    return _set_pin(args.path, True)


def cmd_unpin(args: argparse.Namespace) -> int:
    return _set_pin(args.path, False)
