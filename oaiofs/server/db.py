"""Database engine, sessions, migrations and the write-lock helper.

SQLite runs in WAL mode with a busy timeout and foreign keys on. SQLite has
no ``SELECT … FOR UPDATE``; to keep "read version, check, write" atomic, a
session that is about to change data calls :func:`lock_for_write`, which on
SQLite restarts the (so far read-only) transaction as ``BEGIN IMMEDIATE``
(one writer at a time; reads stay concurrent thanks to WAL) and on PostgreSQL does nothing (callers lock rows with
``with_for_update``).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000
_LOCKED = "oaiofs_sqlite_write_locked"
_WRITE_LOCK = "oaiofs_sqlite_writer_lock"     # engine.info / Session.info: this process's writer queue
MIGRATION_LOCK_KEY = 0x0A10F6


def is_sqlite(url_or_bind: Any) -> bool:
    """True if the URL, engine or connection talks to SQLite."""
    if isinstance(url_or_bind, str):
        return make_url(url_or_bind).get_backend_name() == "sqlite"
    return url_or_bind.dialect.name == "sqlite"


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs (the driver we install)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


POOL_TIMEOUT_S = 30


def pool_args(slots: int) -> dict[str, Any]:
    """Pool sizes for ``slots`` admitted requests (see :mod:`oaiofs.server.admission`).

    A request mostly holds one connection; a few hold a second one briefly (tus,
    long-poll fetches), and the purge loop takes one: ``slots`` kept open plus as
    many again (and a little) on demand, so an admitted request never waits for one.
    """
    return {"pool_size": slots, "max_overflow": slots + 4, "pool_timeout": POOL_TIMEOUT_S}


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, busy timeout, foreign keys, explicit BEGINs."""
    url = normalize_url(url)
    if not is_sqlite(url):
        return create_engine(url, pool_pre_ping=True, **kwargs)
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        _private_file(Path(database))
    else:
        kwargs = {k: v for k, v in kwargs.items() if not k.startswith(("pool_", "max_overflow"))}
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                           **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None      # we emit BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")      # deferred: readers never wait; writers use lock_for_write

    engine.info = {_WRITE_LOCK: threading.Lock()}   # type: ignore[attr-defined]
    return engine


def _private_file(path: Path) -> None:
    """Create the SQLite file (and its WAL/shm companions) readable by this user only (0600)."""
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            fd = os.open(name, os.O_CREAT | os.O_RDWR, 0o600) if name == path else None
            if fd is not None:
                os.close(fd)
            if name.exists():
                os.chmod(name, 0o600)
        except OSError as exc:      # e.g. a read-only location: SQLite reports it properly later
            log.debug("cannot make %s private: %s", name, exc)


def make_sessionmaker(engine: Engine, **info: Any) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit; ``info`` lands in ``Session.info``."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True, info=info)


def lock_for_write(db: Session) -> None:
    """Make the rest of ``db``'s transaction a serialised write transaction on SQLite.

    The (so far read-only) SQLite transaction is ended and restarted as ``BEGIN
    IMMEDIATE`` underneath SQLAlchemy, so the session and any
    ``sessionmaker.begin()`` block stay intact; rows read before should be
    re-read (``populate_existing``). Call it *before reading* what a change
    depends on; it also runs automatically before the first flush or ORM
    INSERT/UPDATE/DELETE of a transaction (a safety net that avoids
    "database is locked" errors, not a substitute for reading under the lock).
    No-op on other databases and when the lock is already held.
    """
    if db.info.get(_LOCKED) or not is_sqlite(db.get_bind()):
        return
    # Writers of this process queue on a lock first: SQLite's own busy handler polls with sleeps of
    # up to 100 ms, so under contention some writers lost every race for seconds (the p99 of the load
    # benchmark). The lock is released when the session's transaction ends, in whatever thread.
    writer_lock = getattr(db.get_bind(), "info", {}).get(_WRITE_LOCK)
    if writer_lock is not None and _WRITE_LOCK not in db.info:
        if not writer_lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise OperationalError("BEGIN IMMEDIATE", {}, TimeoutError("database is locked (writer queue)"))
        db.info[_WRITE_LOCK] = writer_lock
    try:
        raw = db.connection().connection.dbapi_connection
        cursor = raw.cursor()
        try:
            if raw.in_transaction:
                cursor.execute("COMMIT")     # nothing was written yet in this transaction
            cursor.execute("BEGIN IMMEDIATE")
        finally:
            cursor.close()
    except BaseException:
        _release_writer(db)
        raise
    db.info[_LOCKED] = True


def _clear_lock_flag(db: Session, *_args: Any) -> None:
    db.info.pop(_LOCKED, None)
    _release_writer(db)


def _release_writer(db: Session) -> None:
    writer_lock = db.info.pop(_WRITE_LOCK, None)
    if writer_lock is not None:
        writer_lock.release()


def _end_of_transaction(db: Session, transaction: Any) -> None:
    if transaction.parent is None:      # the outermost one: commit, rollback or close
        _clear_lock_flag(db)


def _lock_before_flush(db: Session, *_args: Any) -> None:
    lock_for_write(db)


def _lock_before_orm_write(state: Any) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        lock_for_write(state.session)


event.listen(Session, "after_commit", _clear_lock_flag)
event.listen(Session, "after_rollback", _clear_lock_flag)
event.listen(Session, "after_transaction_end", _end_of_transaction)
event.listen(Session, "before_flush", _lock_before_flush)
event.listen(Session, "do_orm_execute", _lock_before_orm_write)


@contextlib.contextmanager
def transaction(state: Any) -> Iterator[Session]:
    """A short session of ``state.sessionmaker``: committed on success, rolled back on error, always closed."""
    db = state.sessionmaker()
    try:
        yield db
        db.commit()
    except BaseException:
        db.rollback()
        raise
    finally:
        db.close()


def aware(value: dt.datetime) -> dt.datetime:
    """``value`` with UTC attached if the database returned it naive (SQLite)."""
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def iso(value: dt.datetime | None) -> str | None:
    """A stored time as ISO 8601 in UTC (None stays None)."""
    return None if value is None else aware(value).astimezone(dt.timezone.utc).isoformat()


def alembic_config(db_url: str) -> "AlembicConfig":
    """A programmatic Alembic configuration (no alembic.ini needed)."""
    from alembic.config import Config as AlembicConfig
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalize_url(db_url).replace("%", "%%"))
    return cfg


def run_migrations(db_url: str) -> None:
    """Upgrade the database at ``db_url`` to the newest schema.

    Concurrent callers (several server processes, ``user add`` during ``serve``)
    are serialised: a lock file next to a SQLite database, a session advisory
    lock on PostgreSQL.
    """
    from alembic import command as alembic_command
    from sqlalchemy import pool, text

    url = normalize_url(db_url)
    cfg = alembic_config(url)
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with contextlib.ExitStack() as stack:
            if is_sqlite(url):
                database = make_url(url).database
                if database and database != ":memory:":
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
                    _private_file(Path(database))
                    lock_file = stack.enter_context(open(f"{database}.migrate.lock", "a"))
                    fcntl.flock(lock_file, fcntl.LOCK_EX)
            conn = stack.enter_context(engine.connect())
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()
            log.info("upgrading database schema")
            cfg.attributes["connection"] = conn
            alembic_command.upgrade(cfg, "head")
            conn.commit()
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()
    finally:
        engine.dispose()


def has_schema(engine: Engine) -> bool:
    """True if the database was migrated before (cheap check, no Alembic import)."""
    return inspect(engine).has_table("alembic_version")
