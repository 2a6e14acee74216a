"""Drive fixtures. Reusable by other suites: ``mounted_drive`` (stable name and signature).

``mounted_drive(server, user, password=PASSWORD, cache_dir=None, cache_size="256M", extra_args=())``
mounts ``user``'s objects from ``server`` (a ``ServerProcess``) with a real FUSE mount
in a temp folder (``oaiofs mount --foreground`` as a child process) and returns a
:class:`MountedDrive` (``mountpoint``, ``cache_dir``, ``proc``, ``stop()``, ``kill()``,
``log()``). Every mount is unmounted in teardown, also when the test failed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from oaiofs.spawn import oaiofs_argv

from tests.conftest import PASSWORD, ServerProcess, wait_until

MOUNT_TIMEOUT_S = 30.0


@dataclass
class MountedDrive:
    """A running ``oaiofs mount --foreground`` child and where it is mounted."""

    mountpoint: Path
    cache_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str] = field(default_factory=list)

    def path(self, *parts: str) -> Path:
        return self.mountpoint.joinpath(*parts)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def mounted(self) -> bool:
        return os.path.ismount(self.mountpoint)

    def stop(self, timeout: float = 30.0) -> None:
        """Unmount like ``fusermount -u`` and wait for the mount process to finish."""
        if self.mounted:
            deadline = time.monotonic() + timeout
            while self.mounted:
                result = subprocess.run(["fusermount", "-u", str(self.mountpoint)], capture_output=True)
                if result.returncode == 0 or not self.mounted:
                    break
                if time.monotonic() > deadline:
                    subprocess.run(["fusermount", "-uz", str(self.mountpoint)], capture_output=True)
                    break
                time.sleep(0.2)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """kill -9 the mount process (the kernel mount is then detached lazily)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        subprocess.run(["fusermount", "-uz", str(self.mountpoint)], capture_output=True)


def start_mount(mountpoint: Path, cache_dir: Path, server: ServerProcess, user: str, password: str = PASSWORD,
                cache_size: str = "256M", extra_args: tuple[str, ...] = ()) -> MountedDrive:
    """Mount and wait until it is ready (raises with the mount log if it exits instead)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    log_path = cache_dir.parent / f"{cache_dir.name}-mount.log"
    argv = oaiofs_argv("-v", "mount", str(mountpoint), "--server", server.url,
                       "--user", user, "--cache", str(cache_dir), "--cache-size", cache_size, "--foreground",
                       "--poll", "5", *extra_args)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(os.environ, OAIOFS_PASSWORD=password))
    drive = MountedDrive(mountpoint, cache_dir, proc, log_path, argv)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"mount exited with {proc.returncode}: {drive.log()[-2000:]}")
        return drive.mounted

    wait_until(ready, timeout=MOUNT_TIMEOUT_S, message=f"mount at {mountpoint}")
    return drive


@pytest.fixture
def user_api(make_user, api_for) -> tuple[str, Any]:
    """A fresh user and an ApiClient of theirs: ``user, api = user_api``."""
    user = make_user("drive")
    return user, api_for(user)


@pytest.fixture
def mounted_drive(tmp_path: Path) -> Iterator[Callable[..., MountedDrive]]:
    """Factory: ``mounted_drive(server, user, ...) -> MountedDrive``; all unmounted at teardown."""
    drives: list[MountedDrive] = []
    counter = iter(range(1000))

    def make(server: ServerProcess, user: str, password: str = PASSWORD, cache_dir: Path | None = None,
             cache_size: str = "256M", extra_args: tuple[str, ...] = ()) -> MountedDrive:
        n = next(counter)
        drive = start_mount(tmp_path / f"mnt{n}", cache_dir or tmp_path / f"cache{n}", server, user, password,
                            cache_size, extra_args)
        drives.append(drive)
        return drive

    yield make
    for drive in drives:
        try:
            drive.stop(timeout=20)
        except Exception:  # noqa: BLE001 - teardown must unmount everything
            drive.kill()


