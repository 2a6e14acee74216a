"""Mounting from Python scripts: ``with oaiofs.mounted(...) as drive:``.

    import oaiofs

    with oaiofs.mounted("/mnt/oaio", server="http://127.0.0.1:8470", user="alice",
                        password_file="/etc/oaiofs/alice.password") as drive:
        (drive.path / "Report" / "data.csv").write_text("1,2,3\\n")
        drive.wait_synced(timeout=60)          # the server has it
        print(drive.status()["online"])
    # unmounted here, after the pending uploads (PendingChanges if they did not finish in time)

It runs ``oaiofs mount`` (the mount process lives on in the background until
unmounted), so it behaves exactly like the command line, config file included.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from . import exitcodes

PASSWORD_ENV = "OAIOFS_PASSWORD"
POLL_S = 0.1


class MountError(Exception):
    """``oaiofs mount``/``umount`` failed; ``code`` is its exit code (see :mod:`oaiofs.exitcodes`)."""

    def __init__(self, message: str, code: int = exitcodes.ERROR) -> None:
        super().__init__(message)
        self.message, self.code = message, code


class PendingChanges(MountError, TimeoutError):
    """Changes were still waiting for the server when the time was up (``pending``: their summaries)."""

    def __init__(self, message: str, pending: list[dict[str, Any]], failed: list[dict[str, Any]]) -> None:
        super().__init__(message, exitcodes.PENDING)
        self.pending, self.failed = pending, failed


def _run(args: list[str], password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if password is not None:
        env[PASSWORD_ENV] = password
    # cwd "/": `python -m oaiofs` must not import a folder named oaiofs from the caller's cwd
    return subprocess.run([sys.executable, "-m", "oaiofs", *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, cwd="/")


def _message(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line.removeprefix("oaiofs: ") for line in result.stderr.splitlines() if line.strip()]
    return "\n".join(lines[-5:]) or f"exit status {result.returncode}"


class Mount:
    """A mounted drive (returned by :func:`mount` and :func:`mounted`)."""

    def __init__(self, mountpoint: Path) -> None:
        self.path = mountpoint

    @property
    def is_mounted(self) -> bool:
        return os.path.ismount(self.path)

    def status(self) -> dict[str, Any]:
        """The mount's status document (``online``, ``ops``, ``failed``, ``conflicts``, ``cache``, ...)."""
        from .drive_commands import read_status

        status = read_status(self.path)
        if status is None:
            raise MountError(f"{self.path} is not a mounted oaiofs drive")
        return status

    def wait_synced(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until every change made through the mount is on the server; returns the status.

        Raises :class:`PendingChanges` when ``timeout`` seconds pass first (the changes stay queued),
        or at once when the server refused changes (``failed``; their bytes are kept in the cache)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status()
            pending, failed = status.get("ops", []), status.get("failed", [])
            if failed:
                raise PendingChanges(f"{len(failed)} change(s) refused by the server: "
                                     + "; ".join(f"{o.get('path')}: {o.get('error')}" for o in failed[:5]),
                                     pending, failed)
            if not pending and not status.get("open_for_writing"):
                return status
            if deadline is not None and time.monotonic() >= deadline:
                writing = status.get("open_for_writing", 0)
                raise PendingChanges(f"{len(pending)} change(s) not on the server after {timeout}s"
                                     + (f" ({writing} file(s) still open for writing)" if writing else "")
                                     + ("; the server is unreachable" if not status.get("online", True) else ""),
                                     pending, failed)
            time.sleep(POLL_S)

    def unmount(self, timeout: float | None = None, force: bool = False) -> None:
        """Wait for pending uploads (``timeout``: :class:`PendingChanges`, still mounted), then unmount.

        ``force``: unmount at once; queued changes are uploaded by the next mount of the same cache."""
        if not self.is_mounted:
            return
        if not force:
            self.wait_synced(timeout)
        result = _run(["umount", str(self.path), "--force"])
        if result.returncode != 0 and self.is_mounted:
            raise MountError(f"cannot unmount {self.path}: {_message(result)}", result.returncode)

    def __repr__(self) -> str:
        return f"<oaiofs.Mount {self.path} {'mounted' if self.is_mounted else 'unmounted'}>"


def mount(mountpoint: str | os.PathLike[str], *, server: str | None = None, user: str | None = None,
          password_file: str | os.PathLike[str] | None = None, password: str | None = None,
          cache: str | os.PathLike[str] | None = None, cache_size: str | int | None = None,
          drive: str | None = None, config: str | os.PathLike[str] | None = None, allow_other: bool = False,
          metrics_addr: str | None = None, extra_args: tuple[str, ...] = ()) -> Mount:
    """Mount and return once it is mounted (raises :class:`MountError` with the reason and exit code).

    Arguments are those of ``oaiofs mount``; what is not given comes from the config file.
    ``password`` is handed to the mount process in its environment, never on a command line."""
    path = Path(mountpoint).absolute()
    args = ["mount", str(path)]
    for flag, value in (("--server", server), ("--user", user), ("--password-file", password_file),
                        ("--cache", cache), ("--cache-size", cache_size), ("--drive", drive),
                        ("--config", config), ("--metrics-addr", metrics_addr)):
        if value is not None:
            args += [flag, str(Path(value).absolute()) if flag in ("--password-file", "--cache", "--config")
                     else str(value)]
    if allow_other:
        args.append("--allow-other")
    args += list(extra_args)
    result = _run(args, password)
    if result.returncode != 0 or not os.path.ismount(path):
        raise MountError(f"cannot mount {path}: {_message(result)}", result.returncode or exitcodes.ERROR)
    return Mount(path)


@contextlib.contextmanager
def mounted(mountpoint: str | os.PathLike[str], *, sync_timeout: float | None = None,
            **kwargs: Any) -> Iterator[Mount]:
    """Context manager: mounted inside, unmounted (after pending uploads) on exit.

    ``sync_timeout``: seconds to wait for pending uploads on exit (None: as long as it takes);
    when they are not done by then :class:`PendingChanges` is raised and the drive stays mounted
    (uploads go on; ``drive.unmount(force=True)`` leaves them for the next mount)."""
    drive = mount(mountpoint, **kwargs)
    try:
        yield drive
    finally:
        drive.unmount(timeout=sync_timeout)
