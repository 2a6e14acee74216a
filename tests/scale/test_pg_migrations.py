"""``oaiofs db upgrade`` on PostgreSQL is safe when several servers start at once.

(That the migrations build the models' schema on SQLite and PostgreSQL is checked in
``tests/server/test_migrations.py``.)
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.scale.scale_fixtures import pg_database, services  # noqa: F401

pytestmark = pytest.mark.scale


def upgrade(url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "oaiofs", "db", "upgrade", "--db", url, "--data", str(data_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_concurrent_upgrades_of_a_fresh_database_all_succeed(pg_database: str, tmp_path: Path) -> None:
    procs = [upgrade(pg_database, tmp_path / f"d{i}") for i in range(3)]    # N servers starting at once
    outputs = [p.communicate(timeout=120)[0].decode(errors="replace") for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    again = upgrade(pg_database, tmp_path / "again")                          # idempotent
    assert again.wait(timeout=120) == 0
