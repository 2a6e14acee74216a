"""``oaiofs db upgrade`` on PostgreSQL: the same migrations as on SQLite, safe when servers start at once."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from oaiofs.server import db as dbmod
from oaiofs.server.models import Base
from scale_fixtures import pg_database, services  # noqa: F401

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


def test_migrated_postgres_schema_matches_the_models(pg_database: str, tmp_path: Path) -> None:
    assert upgrade(pg_database, tmp_path).wait(timeout=120) == 0
    engine = dbmod.make_engine(pg_database)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert diffs == [], diffs
    assert set(Base.metadata.tables) <= tables
