"""The server and drive processes of a benchmark run, started and always stopped cleanly.

Both run in their own session (``start_new_session``) so that a Ctrl-C in the
terminal reaches only the benchmark, which then unmounts and stops them in order.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from oaiofs import protocol
from oaiofs.spawn import oaiofs_argv

from .measure import BenchError

log = logging.getLogger(__name__)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate`` until true; raise ``BenchError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


def log_tail(path: Path, lines: int = 20) -> str:
    """The last line of a log first (usually the error), then its last ``lines`` lines."""
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join(tail[-1:] + ["--- log tail:"] + tail) if tail else ""


def stop_process(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log.warning("process %d ignored SIGTERM; killing it", proc.pid)
        proc.kill()
        proc.wait()


def _oaiofs(*args: str) -> list[str]:
    return oaiofs_argv(*args)


class ServerHandle:
    """``oaiofs serve`` on 127.0.0.1 with its own data folder."""

    def __init__(self, data_dir: Path, log_dir: Path, extra_args: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.extra_args = list(extra_args or [])
        self.log_path = log_dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "ServerHandle":
        import requests

        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                _oaiofs("serve", "--data", str(self.data_dir), "--host", "127.0.0.1", "--port", str(self.port),
                        *self.extra_args),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise BenchError(f"server exited with {self.proc.returncode}:\n{log_tail(self.log_path)}")
            try:
                return requests.get(self.url + protocol.PATH_STAMP, timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, timeout, f"the server on {self.url}", interval=0.1)
        log.info("server %d ready on %s", self.proc.pid, self.url)
        return self

    def add_user(self, name: str, password: str) -> None:
        storage = [a for a in self.extra_args if a.startswith(("--db", "--blobs"))]
        result = subprocess.run(_oaiofs("user", "add", name, "--data", str(self.data_dir), *storage),
                                env=dict(os.environ, OAIOFS_PASSWORD=password), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            raise BenchError(f"oaiofs user add {name} failed: {result.stdout.decode(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            log.info("server stopped")
            self.proc = None


class MountHandle:
    """One ``oaiofs mount --foreground`` process; its pid is the drive's pid."""

    def __init__(self, mountpoint: Path, server_url: str, user: str, password: str, cache_dir: Path,
                 log_path: Path, cache_size: str | None = None, extra_args: list[str] | None = None) -> None:
        self.mountpoint = mountpoint
        self.server_url = server_url
        self.user = user
        self.password = password
        self.cache_dir = cache_dir
        self.cache_size = cache_size
        self.log_path = log_path
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError("the drive is not running")
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> "MountHandle":
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        args = ["mount", str(self.mountpoint), "--server", self.server_url, "--user", self.user,
                "--cache", str(self.cache_dir), "--foreground"]
        if self.cache_size:
            args += ["--cache-size", self.cache_size]
        args += self.extra_args
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(_oaiofs(*args), env=dict(os.environ, OAIOFS_PASSWORD=self.password),
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

        def mounted() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise BenchError(f"the drive exited with {self.proc.returncode}:\n{log_tail(self.log_path)}")
            return os.path.ismount(self.mountpoint)

        wait_for(mounted, timeout, f"the drive at {self.mountpoint}")
        log.info("drive %d mounted at %s", self.proc.pid, self.mountpoint)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """``oaiofs umount``; if that fails, a lazy ``fusermount -uz``; then end the process."""
        if self.proc is None:
            return
        if os.path.ismount(self.mountpoint):
            try:
                subprocess.run(_oaiofs("umount", str(self.mountpoint)), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("oaiofs umount %s timed out", self.mountpoint)
        if os.path.ismount(self.mountpoint):
            log.warning("lazy-unmounting %s", self.mountpoint)
            subprocess.run(["fusermount", "-uz", str(self.mountpoint)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
        log.info("drive %d stopped (exit %s)", self.proc.pid, self.proc.returncode)
        self.proc = None

    def kill(self) -> None:
        """End the drive at once (a hung request then fails with ENOTCONN instead of blocking forever)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()


class Watchdog:
    """Kill a drive that takes longer than ``seconds`` for one workload (``with Watchdog(mount, 300):``).

    Whatever the killed drive made fail (ENOTCONN, a short read) is reported as the timeout it was.
    """

    def __init__(self, mount: MountHandle, seconds: float) -> None:
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._mount = mount
        self.seconds = seconds
        self.fired = False

    def _fire(self) -> None:
        self.fired = True
        log.error("workload exceeded %.0f s; killing drive %s", self.seconds, self._mount.pid)
        self._mount.kill()

    def __enter__(self) -> "Watchdog":
        self._timer.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        self._timer.cancel()
        if self.fired:
            raise BenchError(f"the workload took over {self.seconds:.0f} s; the drive was killed") from exc
