"""Alembic environment, driven programmatically from :func:`oaiofs.server.db.run_migrations`."""
from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool, text

from oaiofs.server.models import Base

config = context.config
target_metadata = Base.metadata
MIGRATION_LOCK_ID = 0x6F61696F      # PostgreSQL advisory lock: one migrator at a time


def serialize_migrators(conn: Connection) -> None:
    """Servers starting at once on one PostgreSQL database: the others wait here, then find it current."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            serialize_migrators(connection)
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            serialize_migrators(conn)
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
