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
import warnings
from pathlib import Path
from typing import Any

from . import exitcodes
from .mount_lookup import oaiofs_mounts as oaiofs_mounts   # re-exported: share/trash commands use it
from .protocol import XATTR_INFO, XATTR_MOUNT_STATUS, XATTR_PIN
from .spawn import oaiofs_argv

log = logging.getLogger(__name__)

PASSWORD_ENV = "OAIOFS_PASSWORD"
MOUNT_WAIT_S = 60.0
STATUS_FILE = "status.json"
STATUS_FILE_INTERVAL_S = 0.5
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def register(subparsers: Any) -> None:
    """Add the drive's sub-commands to the ``oaiofs`` parser."""
    p = subparsers.add_parser("mount", help="mount your oaio objects as a folder")
    p.add_argument("mountpoint", type=Path, nargs="?",
                   help="where to mount (default: the drive's mountpoint in the config file)")
    p.add_argument("--drive", help="a named drive of the config file ([drives.NAME])")
    p.add_argument("--config", type=Path, help="config file (default: $XDG_CONFIG_HOME/oaiofs/config.toml)")
    p.add_argument("--server", help="server URL, e.g. http://127.0.0.1:8470")
    p.add_argument("--user")
    p.add_argument("--password-file", type=Path,
                   help="file holding the password (must be private: mode 0600); "
                        f"else ${PASSWORD_ENV} or a prompt")
    p.add_argument("--cache", type=Path, help="cache folder (default: per user+server in the user cache dir)")
    p.add_argument("--cache-size", type=parse_size, default=None, help="cache quota, e.g. 512M, 2G (default 2G)")
    p.add_argument("--foreground", action="store_true", help="serve in this process until unmounted")
    p.add_argument("--attr-timeout", type=float, default=None, help="kernel attribute cache seconds (default 1)")
    p.add_argument("--entry-timeout", type=float, default=None, help="kernel name cache seconds (default 1)")
    p.add_argument("--poll", type=float, default=None, help="change-feed long-poll seconds (default 20)")
    p.add_argument("--allow-other", action="store_true", default=None, help="let other users see the mount")
    p.add_argument("--no-xattrs", action="store_true", default=None,
                   help="no extended attributes at all (the kernel stops forwarding xattr calls); "
                        "`oaiofs pin`/`unpin` and getfattr do not work")
    p.add_argument("--metrics-addr", metavar="HOST:PORT",
                   help="serve Prometheus metrics of this mount at http://HOST:PORT/metrics")
    p.add_argument("--log-format", choices=("text", "json"), default=None, help="mount log format (default text)")
    p.add_argument("--upload-parallel", type=int, default=None, metavar="N",
                   help="independent changes of one object sent at once (default 4, or $OAIOFS_UPLOAD_PARALLEL; "
                        "1: one at a time)")
    p.set_defaults(func=cmd_mount)

    p = subparsers.add_parser("umount", help="unmount, after pending uploads are done")
    p.add_argument("mountpoint", type=Path, nargs="?", help="default: the --drive's mountpoint in the config file")
    p.add_argument("--drive", help="a named drive of the config file")
    p.add_argument("--config", type=Path, help="config file (default: $XDG_CONFIG_HOME/oaiofs/config.toml)")
    p.add_argument("--force", action="store_true", help="do not wait: queued uploads resume on the next mount")
    p.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    p.add_argument("--lazy", action="store_true", help="detach now even if files are open (fusermount -z)")
    p.set_defaults(func=cmd_umount)

    p = subparsers.add_parser("status", help="uploads, conflicts, cache use and online state of mounts")
    p.add_argument("mountpoint", type=Path, nargs="?")
    p.add_argument("--json", action="store_true", help="print the raw status document")
    p.add_argument("-v", "--details", action="store_true", help="list every pending change and conflict")
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
MOUNT_DEFAULTS: dict[str, Any] = {"cache_size": 2 << 30, "attr_timeout": 1.0, "entry_timeout": 1.0, "poll": 20.0,
                                  "allow_other": False, "no_xattrs": False, "log_format": "text"}


def resolve_mount_args(args: argparse.Namespace) -> argparse.Namespace:
    """Flags over the config file's drive over the defaults; raises ConfigError for what is missing."""
    from .config import ConfigError, load_config

    config = load_config(args.config)
    drive = config.drive(args.drive, args.mountpoint)
    merged = argparse.Namespace(**vars(args))
    for key in ("server", "user", "password_file", "mountpoint", "cache", "cache_size", "attr_timeout",
                "entry_timeout", "poll", "allow_other", "no_xattrs", "metrics_addr", "log_format"):
        if getattr(args, key, None) is None:
            value = drive.get(key, MOUNT_DEFAULTS.get(key))
            if key == "cache_size" and isinstance(value, str):
                try:
                    value = parse_size(value)
                except argparse.ArgumentTypeError as exc:
                    raise ConfigError(f"{config.path}: cache_size: {exc}") from None
            setattr(merged, key, value)
    where = f" (or in {config.path})" if config.path else ""
    if merged.mountpoint is None:
        raise ConfigError(f"no mountpoint: give one{where}")
    for key in ("server", "user"):
        if not getattr(merged, key):
            raise ConfigError(f"no {key}: give --{key}{where or ' or write it in the config file'}")
    if merged.metrics_addr:
        parse_host_port(merged.metrics_addr)
    return merged


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); ConfigError if it is not one."""
    from .config import ConfigError

    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"not HOST:PORT: {text!r} (e.g. 127.0.0.1:9470)")
    return host.strip("[]") or "127.0.0.1", int(port)


def mount_password(args: argparse.Namespace) -> str | None:
    """From ${PASSWORD_ENV}, the password file or a prompt; None if there is no way to get one."""
    from .config import read_password_file

    password = os.environ.get(PASSWORD_ENV)
    if password is not None:
        return password
    if args.password_file is not None:
        return read_password_file(args.password_file)
    if not sys.stdin.isatty():
        return None
    return getpass.getpass(f"password for {args.user} at {args.server}: ")


def cmd_mount(args: argparse.Namespace) -> int:
    from .config import ConfigError

    try:
        args = resolve_mount_args(args)
    except ConfigError as exc:
        return _fail(str(exc), exitcodes.USAGE)
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
        return _fail(problem, exitcodes.MOUNTPOINT)
    try:
        password = mount_password(args)          # after the mountpoint check: no prompt for a busy one
    except ConfigError as exc:
        return _fail(str(exc), exitcodes.USAGE)
    if password is None:
        return _fail(f"no password: set {PASSWORD_ENV}, use --password-file (or password_file in the config file) "
                     "or run in a terminal", exitcodes.USAGE)
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
                       "--entry-timeout", str(args.entry_timeout), "--poll", str(args.poll), "--foreground",
                       "--log-format", args.log_format)
    if args.metrics_addr:
        argv += ["--metrics-addr", args.metrics_addr]
    if getattr(args, "upload_parallel", None):
        argv += ["--upload-parallel", str(args.upload_parallel)]
    if args.config:      # the child reads the same file (every value it needs is on its command line)
        argv += ["--config", str(args.config.absolute())]
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
                      f"changes are queued until it is back; log: {log_path}", file=sys.stderr)
            else:
                print(f"oaiofs: mounted {args.user}@{args.server} at {mountpoint} (pid {child.pid}); "
                      f"log: {log_path}")
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
    from .logsetup import use_log_format
    from .drive import Drive, DriveConfig
    from .vfs.journal import JournalBusy

    use_log_format(args.log_format)

    config = DriveConfig(server=args.server, user=args.user, password=password, cache_dir=cache_dir,
                         cache_bytes=args.cache_size, long_poll_s=args.poll,
                         upload_parallel=getattr(args, "upload_parallel", None))
    try:
        drive = Drive(config)
    except JournalBusy:
        return _fail(f"the cache {cache_dir} is in use by another mount")
    try:
        online = drive.start()
    except Unauthorized as err:
        drive.stop()
        if err.code == "account_disabled":
            return _fail(f"login refused: the account {args.user} is disabled at {args.server}", exitcodes.LOGIN)
        return _fail(f"login refused: wrong user name or password for {args.user} at {args.server}", exitcodes.LOGIN)
    except Unavailable:
        drive.stop()
        return _fail(f"server {args.server} is unreachable and nothing is cached in {cache_dir}",
                     exitcodes.UNREACHABLE)
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

    metrics = None
    if args.metrics_addr:
        from .metrics import MountMetrics

        metrics = MountMetrics(drive.vfs.status)
        try:
            metrics.serve(*parse_host_port(args.metrics_addr))
        except OSError as exc:
            stop()
            return _fail(f"cannot serve metrics at {args.metrics_addr}: {exc.strerror or exc}", exitcodes.USAGE)
    options = FuseOptions(attr_timeout=args.attr_timeout, entry_timeout=args.entry_timeout,
                          fsname=f"oaiofs:{args.user}", allow_other=args.allow_other,
                          xattrs=not args.no_xattrs, observer=metrics.observe_fuse_op if metrics else None)
    publisher = StatusPublisher(drive.vfs.status, mountpoint, cache_dir)
    publisher.start()
    try:
        mount(drive.vfs, str(mountpoint), options, on_destroy=stop)
    except RuntimeError as exc:
        stop()
        return _fail(f"cannot mount {mountpoint}: {exc}")
    finally:
        publisher.stop()
        if metrics is not None:
            metrics.stop()
    stop()
    return 0


# ---------------------------------------------------------------- status side channel
def registry_path(mountpoint: Path) -> Path:
    """Where the mount at ``mountpoint`` records its cache folder (per user runtime dir)."""
    import hashlib

    import platformdirs

    digest = hashlib.sha256(str(mountpoint.absolute()).encode()).hexdigest()[:32]
    with warnings.catch_warnings():   # no XDG_RUNTIME_DIR (root, services): its fallback is fine, say nothing
        warnings.simplefilter("ignore")
        runtime = platformdirs.user_runtime_dir("oaiofs")
    return Path(runtime) / "mounts" / f"{digest}.json"


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


def _upload_progress(status: dict[str, Any]) -> tuple[int, int, int]:
    """(ops pending, bytes done, bytes total) of the queued uploads."""
    ops = status.get("ops", [])
    total = sum(int(o.get("size") or 0) for o in ops if o.get("kind") == "put_file")
    done = sum(min(int(o.get("offset") or 0), int(o.get("size") or 0)) for o in ops if o.get("kind") == "put_file")
    return len(ops), done, total


# ---------------------------------------------------------------- umount
def cmd_umount(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config

    if args.mountpoint is None:
        try:
            found = load_config(args.config).drive(args.drive).get("mountpoint")
        except ConfigError as exc:
            return _fail(str(exc), 2)
        if found is None:
            return _fail("no mountpoint: give one (or --drive NAME with a mountpoint in the config file)", 2)
        args.mountpoint = found
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
    result = subprocess.run(["fusermount", "-uz" if getattr(args, "lazy", False) else "-u", str(mountpoint)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        return _fail(f"cannot unmount {mountpoint}: {result.stderr.strip() or result.stdout.strip()}")
    print(f"oaiofs: unmounted {mountpoint}" + (" (queued changes resume on the next mount)" if args.force else ""))
    return 0


def _wait_for_uploads(mountpoint: Path, timeout: float | None) -> int:
    from .progress import ByteBar

    status = _fresh_status(mountpoint)
    if status is None:
        return 0
    pending, done, total = _upload_progress(status)
    if not pending:
        return 0
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = ByteBar(f"uploading ({pending} pending)", total=total - done)
    try:
        while pending:
            if deadline is not None and time.monotonic() > deadline:
                bar.close()
                return _fail(f"{pending} changes still pending after {timeout}s; not unmounted "
                             "(use --force to unmount and upload them on the next mount)", exitcodes.PENDING)
            time.sleep(0.25)
            status = read_status(mountpoint) or {}
            pending, done, total = _upload_progress(status)
            online = status.get("online", True)
            bar.remaining(total - done, desc=f"{'uploading' if online else 'OFFLINE, waiting'} ({pending} pending)")
    except KeyboardInterrupt:
        bar.close()
        return _fail("interrupted: still mounted, uploads continue", 130)
    bar.close()
    failed = status.get("failed", [])
    if failed:
        print(f"oaiofs: {len(failed)} change(s) failed and are kept in the cache (see 'oaiofs status'; "
              "'oaiofs retry PATH' or 'oaiofs discard PATH')", file=sys.stderr)
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
            print(format_status(mountpoint, status, details=getattr(args, "details", False)))
    return code


def format_status(mountpoint: Path, status: dict[str, Any], details: bool = False) -> str:
    """The human-readable status of one mount: a one-line summary, then what needs attention
    (a refused login, failed changes); pending changes and conflicts one by one with ``details``."""
    cache = status.get("cache", {})
    ops, failed, conflicts = status.get("ops", []), status.get("failed", []), status.get("conflicts", [])
    pending, done, total = _upload_progress(status)
    refused = status.get("refused")
    state = "READ-ONLY, OFFLINE" if refused else "online" if status.get("online") else "OFFLINE"
    upload = f" ({_human(total - done)} to upload)" if total > done else ""
    lines = [f"{mountpoint}: {status.get('user', '?')}@{status.get('server', '?')} — {state} — "
             f"{pending} pending{upload}, {len(failed)} failed, {len(conflicts)} conflict(s); "
             f"cache: {_human(cache.get('used_bytes', 0))} of {_human(cache.get('quota_bytes', 0))}, "
             f"{len(cache.get('pins', []))} pinned, {status.get('objects', 0)} objects"]
    if refused:
        lines.append(f"  the server refuses this login: {refused}")
        lines.append("  the drive is read-only until the server accepts the login again (cached files stay readable)")
    names = status.get("names", {})

    def where(entry: dict[str, Any]) -> str:
        oid = entry.get("oaio_id")
        return f"{mountpoint / names.get(oid, oid or '?')}/{entry.get('path') or 'values.json'}"

    for op in failed:
        lines.append(f"  FAILED: {op.get('kind')} {where(op)}: {op.get('error')} (local bytes kept; "
                     "'oaiofs retry' or 'oaiofs discard')")
    if details:
        lines.append(f"  pending: {len(ops)}" + ("" if ops else " (all changes are on the server)"))
        for op in ops:
            progress = ""
            if op.get("kind") == "put_file":
                progress = f" {_human(op.get('offset', 0))}/{_human(op.get('size', 0))}"
            err = f" — last error: {op['error']}" if op.get("error") else ""
            lines.append(f"    [{op.get('state')}] {op.get('kind')} {where(op)}{progress}{err}")
        for conflict in conflicts:
            lines.append(f"  conflict: {where(conflict)} -> {conflict.get('conflict_path')}")
    elif ops or conflicts:
        lines.append("  ('oaiofs status -v' lists them; 'oaiofs conflicts' the conflict copies)")
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


def _set_pin(path: Path, pinned: bool, quiet: bool = False) -> int:
    """Ask the mount (through the ``user.oaio.pin`` xattr) to pin or release ``path``."""
    verb = "pin" if pinned else "unpin"
    try:
        os.setxattr(path, XATTR_PIN, b"1" if pinned else b"0")
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return _fail(_no_xattrs_message(verb, path))
        return _fail(f"cannot {verb} {path}: {exc.strerror}")
    if not quiet:
        print(f"oaiofs: pinned {path} (fetched and kept in the cache)" if pinned else f"oaiofs: unpinned {path}")
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    """Pin with a bar of bytes fetched (the mount fetches inside the setxattr; we watch ``user.oaio.info``)."""
    from .progress import ByteBar
    from .mount_lookup import CommandError, find_mount

    path = args.path
    try:
        mountpoint = find_mount(path)
    except CommandError as err:
        return _fail(str(err))
    info = _pin_info(path)
    if info is not None:
        quota = int(((read_status(mountpoint) or {}).get("cache") or {}).get("quota_bytes") or 0)
        if quota and info["size"] > quota:
            print(f"oaiofs: warning: {path} holds {_human(info['size'])}, more than the cache quota "
                  f"{_human(quota)}: pinned files are never evicted, so the cache will grow past its quota "
                  "(unpin something or mount with a larger --cache-size)", file=sys.stderr)
    outcome: dict[str, Any] = {}

    def pin() -> None:
        outcome["code"] = _set_pin(path, True, quiet=True)

    worker = threading.Thread(target=pin, name="pin", daemon=True)
    worker.start()
    bar = ByteBar(f"fetching {path.name or path}", total=info["size"], done=info["cached_bytes"]) \
        if info is not None and not getattr(args, "quiet", False) else None
    try:
        while worker.is_alive():
            worker.join(0.25)
            now = _pin_info(path) if bar is not None and worker.is_alive() else None
            if bar is not None and now is not None:
                bar.progress(now["cached_bytes"], now["size"])
        if bar is not None and outcome.get("code") == 0:
            final = _pin_info(path)
            if final is not None:
                bar.progress(final["cached_bytes"], final["size"])
    except KeyboardInterrupt:
        return _fail("interrupted: the mount goes on fetching what it started; the path stays pinned", 130)
    finally:
        if bar is not None:
            bar.close()
    if outcome.get("code") == 0:
        print(f"oaiofs: pinned {path} (fetched and kept in the cache)")
    return int(outcome.get("code", 1))


def _pin_info(path: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(os.getxattr(path, XATTR_INFO))
        return info if "cached_bytes" in info else None
    except (OSError, ValueError):
        return None


def cmd_unpin(args: argparse.Namespace) -> int:
    return _set_pin(args.path, False)
