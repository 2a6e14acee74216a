"""The Alembic migrations build exactly the schema of ``oaiofs.server.models`` (SQLite and PostgreSQL)."""
from __future__ import annotations

import os
import uuid

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from oaiofs.server import db as dbmod
from oaiofs.server.models import Base


def _database_urls(tmp_path) -> list[str]:
    urls = [f"sqlite:///{tmp_path / 'migrated.db'}"]
    if os.environ.get("OAIOFS_TEST_PG_URL"):
        from tests.conftest import create_test_database
        urls.append(create_test_database(f"t_migrations_{uuid.uuid4().hex[:12]}"))
    return urls


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    urls = {dbmod.make_engine(u).dialect.name: u for u in _database_urls(tmp_path)}
    if request.param not in urls:
        pytest.skip("PostgreSQL test service not running (scripts/services.sh)")
    return urls[request.param]


def test_migrations_match_models(database_url):
    dbmod.run_migrations(database_url)
    dbmod.run_migrations(database_url)          # idempotent
    engine = dbmod.make_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_downgrade_and_upgrade_again(database_url):
    dbmod.run_migrations(database_url)
    cfg = dbmod.alembic_config(database_url)
    command.downgrade(cfg, "base")
    engine = dbmod.make_engine(database_url)
    try:
        assert not set(Base.metadata.tables) & set(inspect(engine).get_table_names())
        command.upgrade(cfg, "head")
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
