"""One benchmark run: a fresh server with its data, users, API clients and fresh drive mounts.

Everything started here is registered on an ``ExitStack`` and stopped in reverse
order (drives first, then the server) even on errors and Ctrl-C.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
from pathlib import Path
from typing import Iterator

from oaiofs.client.api import ApiClient

from . import profiling
from .config import BenchConfig
from .dataset import Dataset, populate
from .measure import BenchError
from .processes import MountHandle, ServerHandle, Watchdog

log = logging.getLogger(__name__)

FILES_USER = "bench"          # owns the big files and the object written into
MANY_USER = "bench-many"      # owns only the many small objects


class BenchRun:
    """The environment the workloads measure in (see :mod:`bench.workloads`)."""

    def __init__(self, config: BenchConfig, work_dir: Path, stack: contextlib.ExitStack, *,
                 server_args: list[str] | None = None, mount_args: list[str] | None = None,
                 profile_dir: Path | None = None, profile_idle: bool = False, mounts_enabled: bool = True) -> None:
        self.config = config
        self.work_dir = work_dir
        self.stack = stack
        self.server_args = server_args or []
        self.mount_args = mount_args or []
        self.profile_dir = profile_dir
        self.profile_idle = profile_idle
        self.mounts_enabled = mounts_enabled
        self.password = secrets.token_urlsafe(16)
        self._mount_ids = itertools.count()
        self.server: ServerHandle | None = None
        self.apis: dict[str, ApiClient] = {}
        self.data: Dataset | None = None
        self.profiles: dict[str, str] = {}

    def start(self) -> None:
        """Start the server, create the users and upload the dataset."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.server = ServerHandle(self.work_dir / "server-data", self.work_dir, self.server_args)
        self.stack.callback(self.server.stop)
        self.server.start()
        for user in (FILES_USER, MANY_USER):
            self.server.add_user(user, self.password)
            api = ApiClient(self.server.url, user, self.password, timeout=(5, 300))
            self.stack.callback(api.close)
            self.apis[user] = api
        self.data = populate(self.apis[FILES_USER], self.apis[MANY_USER], self.config)

    @property
    def dataset(self) -> Dataset:
        if self.data is None:
            raise RuntimeError("BenchRun.start() was not called")
        return self.data

    @property
    def server_pid(self) -> int:
        """The server process (for CPU accounting)."""
        if self.server is None or self.server.proc is None:
            raise BenchError("the server is not running")
        return self.server.proc.pid

    def api(self, user: str = FILES_USER) -> ApiClient:
        return self.apis[user]

    @contextlib.contextmanager
    def fresh_mount(self, user: str, timeout_s: float | None = None,
                    extra_args: tuple[str, ...] = ()) -> Iterator[MountHandle]:
        """A new drive for ``user`` with an empty cache folder, watched by a watchdog, always unmounted
        (``extra_args``: more ``oaiofs mount`` flags for this drive)."""
        assert self.server is not None
        n = next(self._mount_ids)
        mount = MountHandle(self.work_dir / f"mnt-{n}", self.server.url, user, self.password,
                            self.work_dir / f"cache-{n}", self.work_dir / f"drive-{n}.log",
                            cache_size=self.config.cache_size, extra_args=[*self.mount_args, *extra_args])
        with contextlib.ExitStack() as local:
            local.callback(mount.stop)
            self.stack.callback(mount.stop)     # also on Ctrl-C while the row is running
            mount.start()
            local.enter_context(Watchdog(mount, timeout_s or self.config.row_timeout_s))
            yield mount

    @contextlib.contextmanager
    def profiled(self, mount: MountHandle, name: str) -> Iterator[None]:
        """Record a py-spy profile of the drive around the block (only with ``--profile``)."""
        if self.profile_dir is None:
            yield
            return
        output = self.profile_dir / f"{name}.txt"
        with profiling.PySpyRecorder(mount.pid, output, idle=self.profile_idle):
            yield
        if output.exists():
            summary = profiling.format_summary(profiling.summarize_raw(output))
            (self.profile_dir / f"{name}.top.txt").write_text(summary + "\n")
            self.profiles[name] = str(output)
            log.info("profile of %s:\n%s", name, summary)

