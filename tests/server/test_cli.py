"""``oaiofs user add``, ``oaiofs db upgrade`` and ``oaiofs serve --workers`` as real processes."""
from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import select

from tests.conftest import PASSWORD
from oaiofs.client import ApiClient
from oaiofs.server import db as dbmod, security
from oaiofs.server.models import User

from tests.server.server_helpers import unique_id


def _oaiofs(*args: str, password: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    run_env = dict(os.environ, **(env or {}))
    run_env.pop("OAIOFS_PASSWORD", None)
    if password is not None:
        run_env["OAIOFS_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "oaiofs", *args], env=run_env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def _db_url(data) -> str:
    return os.environ.get("OAIOFS_DB_URL") or f"sqlite:///{data / 'oaiofs.db'}"


def test_user_add_stores_only_a_scrypt_hash(tmp_path):
    data = tmp_path / "data"
    secret = "clear-text-" + unique_id()
    done = _oaiofs("user", "add", "alice", "--data", str(data), "--admin", password=secret)
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout + done.stderr
    engine = dbmod.make_engine(_db_url(data))
    try:
        with dbmod.make_sessionmaker(engine)() as db:
            user = db.scalar(select(User).where(User.username == "alice"))
    finally:
        engine.dispose()
    assert user.is_admin and user.password_hash.startswith("scrypt$")
    assert secret not in user.password_hash
    assert security.verify_password(secret, user.password_hash)
    assert not security.verify_password(secret + "x", user.password_hash)
    assert secret.encode() not in (data / "oaiofs.db").read_bytes()

    again = _oaiofs("user", "add", "alice", "--data", str(data), password="other")
    assert again.returncode != 0 and "already exists" in again.stderr


def test_user_add_refuses_empty_password_and_bad_names(tmp_path):
    data = tmp_path / "data"
    assert _oaiofs("user", "add", "bob", "--data", str(data), password="").returncode != 0
    assert _oaiofs("user", "add", "bad:name", "--data", str(data), password="pw").returncode != 0
    no_password = _oaiofs("user", "add", "carol", "--data", str(data))     # no terminal to prompt on
    assert no_password.returncode != 0


def test_db_upgrade_creates_the_schema(tmp_path):
    data = tmp_path / "data"
    done = _oaiofs("db", "upgrade", "--data", str(data))
    assert done.returncode == 0, done.stderr
    engine = dbmod.make_engine(_db_url(data))
    try:
        assert dbmod.has_schema(engine)
    finally:
        engine.dispose()


def test_serve_with_several_workers(server_factory, tmp_path):
    server = server_factory(tmp_path / "multi", extra_args=["--workers", "2"])
    alice = server.add_user("alice")
    clients = [ApiClient(server.url, alice, PASSWORD, pool_size=1) for _ in range(6)]
    oaio_id = clients[0].create_object({}, unique_id())["oaio_id"]
    for i, api in enumerate(clients):         # separate connections: spread over both workers
        api.update_values(oaio_id, {f"k{i}": i})
    doc = clients[-1].get_object(oaio_id)
    assert doc["values"] == {f"k{i}": i for i in range(6)} and doc["version"] == 7
    events, _ = clients[1].changes(0)
    assert [e["data"]["version"] for e in events] == list(range(1, 8))
    assert len(_children(server.proc.pid)) >= 2      # really two worker processes


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def test_unreachable_database_is_one_clear_line(tmp_path):
    from tests.conftest import free_port
    url = f"postgresql://someone:db-secret-pw@127.0.0.1:{free_port()}/nothing"
    for args in (("user", "add", "bob"), ("db", "upgrade"), ("serve", "--port", str(free_port()))):
        done = _oaiofs(*args, "--data", str(tmp_path / "d"), "--db", url, password="pw")
        assert done.returncode == 1, args
        assert "cannot use the database" in done.stderr and "Traceback" not in done.stderr
        assert "db-secret-pw" not in done.stdout + done.stderr
