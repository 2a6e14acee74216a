"""Shared fixtures: real server processes on 127.0.0.1, users, API clients.

``ServerProcess`` runs ``python -m oaiofs serve`` as a separate process with its own
data folder, waits until it answers, and can be stopped, killed and restarted on
the same data. Extra server arguments (e.g. ``--db postgresql://…``,
``--blobs s3://…``) come from the environment variable ``OAIOFS_TEST_SERVER_ARGS``
so the same tests run against every backend configuration.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

import pytest
import requests

if TYPE_CHECKING:
    from oaiofs.client.api import ApiClient

PASSWORD = "pw-" + "correct horse"


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05,
               message: str = "condition") -> object:
    """Poll ``predicate`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}"
                         + (f" (last error: {last_exc!r})" if last_exc else ""))


# --- backend matrix (issue 7): the same tests on SQLite + local blobs or PostgreSQL + S3 ---
# scripts/services.sh exports OAIOFS_TEST_PG_URL / OAIOFS_TEST_S3_*; with them (or with
# OAIOFS_TEST_BACKEND=postgres-s3) every ServerProcess gets its own fresh PostgreSQL database
# and S3 prefix, named after its data folder (a restart on the same folder finds its data).
# OAIOFS_TEST_BACKEND=sqlite forces the default even when the services are there.
_MATRIX_RUN = os.environ.setdefault("OAIOFS_TEST_MATRIX_RUN", uuid.uuid4().hex[:8])   # same in every copy


def matrix_backend() -> str:
    """``"postgres-s3"`` or ``"sqlite"`` (see above)."""
    chosen = os.environ.get("OAIOFS_TEST_BACKEND", "").strip()
    if chosen:
        return chosen
    return "postgres-s3" if os.environ.get("OAIOFS_TEST_PG_URL") else "sqlite"


def create_test_database(name: str, admin_url: str | None = None) -> str:
    """Create the PostgreSQL database ``name`` on the test cluster if missing; returns its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin_url = admin_url or os.environ.get("OAIOFS_TEST_PG_URL")
    if not admin_url:
        raise RuntimeError("OAIOFS_TEST_PG_URL is not set: run `eval \"$(scripts/services.sh start)\"` first")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def s3_env(services: Mapping[str, str] = os.environ) -> dict[str, str]:
    """boto3's standard variables for the test S3 server (from the ``OAIOFS_TEST_S3_*`` values)."""
    return {"AWS_ENDPOINT_URL_S3": services["OAIOFS_TEST_S3_ENDPOINT"],
            "AWS_ACCESS_KEY_ID": services["OAIOFS_TEST_S3_ACCESS_KEY"],
            "AWS_SECRET_ACCESS_KEY": services["OAIOFS_TEST_S3_SECRET_KEY"],
            "AWS_DEFAULT_REGION": "us-east-1"}


def backend_env(data_dir: Path, env: dict[str, str]) -> dict[str, str]:
    """Server environment for the selected backend ({} for SQLite or when ``env`` picks a database)."""
    if matrix_backend() != "postgres-s3" or "OAIOFS_DB_URL" in env:
        return {}
    name = "t_" + hashlib.sha256(f"{_MATRIX_RUN}:{Path(data_dir).resolve()}".encode()).hexdigest()[:24]
    return {"OAIOFS_DB_URL": create_test_database(name),
            "OAIOFS_BLOBS_URL": f"s3://{os.environ['OAIOFS_TEST_S3_BUCKET']}/{name}", **s3_env()}


class ServerProcess:
    """One ``oaiofs serve`` process on 127.0.0.1 with its own data folder."""

    def __init__(self, data_dir: Path, port: int | None = None, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.extra_args = list(extra_args or []) + shlex.split(os.environ.get("OAIOFS_TEST_SERVER_ARGS", ""))
        self.env = {**os.environ, **backend_env(self.data_dir, env or {}), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> "ServerProcess":   # slow on a loaded 2-core CI machine
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oaiofs", "serve", "--data", str(self.data_dir),
             "--host", "127.0.0.1", "--port", str(self.port), *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_tail()}")
            return requests.get(self.url + "/api/v1/stamp", timeout=1).status_code == 200

        wait_until(ready, timeout=timeout, interval=0.1, message=f"server on {self.url}")
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> "ServerProcess":
        self.stop()
        return self.start()

    def add_user(self, name: str, password: str = PASSWORD) -> str:
        """Create a user through the CLI (``oaiofs user add``)."""
        subprocess.run([sys.executable, "-m", "oaiofs", "user", "add", name, "--data", str(self.data_dir),
                        *[a for a in self.extra_args if a.startswith(("--db", "--blobs"))]],
                       check=True, env=dict(self.env, OAIOFS_PASSWORD=password),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return name

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start extra servers (stopped at the end of the test)."""
    started: list[ServerProcess] = []
    counter = itertools.count()

    def make(data_dir: Path | None = None, **kwargs: object) -> ServerProcess:
        server = ServerProcess(data_dir or tmp_path / f"server{next(counter)}", **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by the whole session (tests use their own users)."""
    server = ServerProcess(tmp_path_factory.mktemp("shared") / "data").start()
    yield server
    server.stop()


@pytest.fixture
def make_user(live_server: ServerProcess) -> Callable[[str], str]:
    """Create a fresh user with a unique name on the shared server: ``make_user('alice')``."""
    def make(prefix: str = "user") -> str:
        return live_server.add_user(f"{prefix}-{uuid.uuid4().hex[:8]}")
    return make


@pytest.fixture
def api_for(live_server: ServerProcess) -> Iterator[Callable[..., "ApiClient"]]:
    """``api_for(user)``: an ApiClient of ``user`` on the shared server (closed afterwards)."""
    from oaiofs.client.api import ApiClient

    clients: list[ApiClient] = []

    def make(user: str, server: ServerProcess | None = None) -> ApiClient:
        client = ApiClient((server or live_server).url, user, PASSWORD)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
