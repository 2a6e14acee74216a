"""Server sub-commands: ``oaiofs serve``, ``oaiofs user add``, ``oaiofs db upgrade``.

``oaiofs user list|passwd|del|disable|enable|admin`` live in :mod:`.admin_commands`."""
from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from pathlib import Path

from .. import protocol
from .command_common import database_error as _database_error, migrate as _migrate, settings_from_args as _settings

log = logging.getLogger(__name__)
GRACEFUL_SHUTDOWN_S = 5   # open long-polls are cut after this on SIGTERM


def _add_storage_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=None, help="data folder (default: the user data dir)")
    parser.add_argument("--db", default=None, help="database URL (default: sqlite:///<data>/oaiofs.db)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve``, ``user`` and ``db`` to the ``oaiofs`` command line."""
    serve = subparsers.add_parser("serve", help="run the oaiofs server")
    _add_storage_args(serve)
    serve.add_argument("--blobs", default=None, help="blob store URL: a folder or s3://bucket/prefix")
    serve.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL (e.g. a local SeaweedFS)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=protocol.DEFAULT_PORT)
    serve.add_argument("--workers", type=int, default=1, help="server processes (needs a shared database)")
    serve.add_argument("--token-ttl", type=int, default=None, metavar="SECONDS",
                       help="lifetime of login tokens (default: 30 days)")
    serve.add_argument("--max-requests", type=int, default=None, metavar="N",
                       help="API requests doing database work at once, per process (default: 16); "
                            "more wait in a queue, and beyond that get 503 + Retry-After")
    serve.add_argument("--history-versions", type=int, default=None, metavar="N",
                       help="version history: keep at least the newest N versions of each file and of each "
                            "object's values (default 10; OAIOFS_HISTORY_KEEP_VERSIONS)")
    serve.add_argument("--history-days", type=float, default=None, metavar="DAYS",
                       help="version history: keep every version younger than DAYS (default 30; "
                            "OAIOFS_HISTORY_KEEP_DAYS); at most OAIOFS_HISTORY_MAX_VERSIONS (1000) per file")
    serve.add_argument("--trash-days", type=float, default=None, metavar="DAYS",
                       help="deleted files, folders and objects stay restorable this long (default: 30)")
    serve.add_argument("--access-log", action="store_true", help="log every request (uvicorn's access log)")
    serve.add_argument("--log-format", choices=("text", "json"), default="text", help="log format (default text)")
    serve.set_defaults(func=cmd_serve)

    user = subparsers.add_parser("user", help="manage server users")
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = user_sub.add_parser("add", help="create a user (password from OAIOFS_PASSWORD or a prompt)")
    add.add_argument("name")
    _add_storage_args(add)
    add.add_argument("--blobs", default=None, help=argparse.SUPPRESS)   # accepted for symmetry with serve
    add.add_argument("--admin", action="store_true", help="make the user an administrator")
    add.set_defaults(func=cmd_user_add)
    from .admin_commands import register_user_actions
    register_user_actions(user_sub, _add_storage_args)

    gc = subparsers.add_parser("gc", help="trim the version history, then remove blobs nothing refers to any more",
                               description="Trim the version history by its retention policy (OAIOFS_HISTORY_KEEP_"
                                           "VERSIONS / _DAYS / _MAX_VERSIONS), then remove stored file data no "
                                           "file entry, kept version, cart or upload refers to once it has been "
                                           "unreferenced for the grace period. The server does both in the "
                                           "background too.")
    _add_storage_args(gc)
    gc.add_argument("--blobs", default=None, help="blob store URL: a folder or s3://bucket/prefix")
    gc.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL")
    gc.add_argument("--dry-run", action="store_true", help="only show what would be removed")
    gc.add_argument("--grace", type=float, default=None, metavar="SECONDS",
                    help="grace period (default: the server setting, OAIOFS_BLOB_GC_GRACE_S or 3600)")
    gc.set_defaults(func=cmd_gc)

    db = subparsers.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_sub.add_parser("upgrade", help="migrate the database schema to the newest version")
    _add_storage_args(upgrade)
    upgrade.set_defaults(func=cmd_db_upgrade)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """``oaiofs db upgrade``."""
    if not _migrate(_settings(args).database_url):
        return 1
    print("database schema is up to date")
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    """``oaiofs user add NAME``: exits 1 if the user exists."""
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError
    from . import security
    from .db import make_engine, make_sessionmaker
    from .models import User

    settings = _settings(args)
    name = args.name.strip()
    if not name or len(name) > 150 or any(ord(c) < 32 for c in name) or ":" in name or "/" in name:
        print(f"invalid user name {args.name!r}", file=sys.stderr)
        return 2
    password = os.environ.get("OAIOFS_PASSWORD")
    if password is None:
        try:
            password = getpass.getpass(f"password for {name}: ")
            repeated = getpass.getpass("repeat the password: ")
        except EOFError:
            print("no password given: type it at the prompt or set OAIOFS_PASSWORD", file=sys.stderr)
            return 2
        if password != repeated:
            print("the passwords differ", file=sys.stderr)
            return 2
    if not password:
        print("the password must not be empty", file=sys.stderr)
        return 2
    engine = make_engine(settings.database_url)
    try:
        if not _migrate(settings.database_url):      # also brings an older schema up to date
            return 1
        with make_sessionmaker(engine).begin() as db:
            if db.scalar(select(User.id).where(User.username == name)) is not None:
                print(f"user {name!r} already exists", file=sys.stderr)
                return 1
            db.add(User(username=name, password_hash=security.hash_password(password), is_admin=args.admin))
    except SQLAlchemyError as exc:
        _database_error(exc)
        return 1
    finally:
        engine.dispose()
    print(f"user {name!r} created")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    """``oaiofs gc [--dry-run]``: one blob collection; prints what went (or would go)."""
    from types import SimpleNamespace

    from . import blob_gc
    from .app import open_blobs
    from .db import make_engine, make_sessionmaker

    settings = _settings(args)
    if not _migrate(settings.database_url):
        return 1
    engine = make_engine(settings.database_url)
    try:
        state = SimpleNamespace(settings=settings, sessionmaker=make_sessionmaker(engine), blobs=open_blobs(settings))
        if not args.dry_run:                 # trash past its retention period first (server/trash.py)
            from . import history, trash
            trash.purge_expired(state)
            trimmed = history.purge_expired(state)
            print(f"version history: {trimmed} version(s) past the retention policy trimmed")
        report = blob_gc.collect(state, dry_run=args.dry_run, grace_s=args.grace)
    finally:
        engine.dispose()
    verb = "would remove" if args.dry_run else "removed"
    for key, size in report.removed:
        print(f"{verb} {key} ({size} bytes)")
    for key, size in report.waiting:
        print(f"unreferenced, in its grace period: {key} ({size} bytes)")
    print(f"{report.blobs} blobs, {report.referenced} referenced; {verb} {len(report.removed)} "
          f"({report.removed_bytes} bytes); {len(report.waiting)} in their grace period")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``oaiofs serve``: migrate, then run uvicorn (one process, or ``--workers N``)."""
    import uvicorn

    settings = _settings(args)
    if not _migrate(settings.database_url):
        return 1
    log_level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    where = settings.db_url.split("@")[-1] if settings.db_url else settings.data_dir   # never print a DB password
    print(f"oaiofs server on http://{settings.host}:{settings.port} (data: {where}, "
          f"{settings.workers} worker{'s' if settings.workers > 1 else ''}); Ctrl+C stops it", file=sys.stderr)
    from ..logsetup import use_log_format
    from .logconfig import uvicorn_log_config

    use_log_format(args.log_format)
    log_config = uvicorn_log_config(log_level, args.access_log, args.log_format)
    if settings.workers > 1:
        import shutil
        import tempfile

        os.environ.update(settings.to_env())
        # prometheus-client's multiprocess mode: each worker writes its values there, /metrics sums them
        metrics_dir = tempfile.mkdtemp(prefix="oaiofs-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        try:
            uvicorn.run("oaiofs.server.app:app_from_env", factory=True, host=settings.host, port=settings.port,
                        workers=settings.workers, log_level=None, access_log=args.access_log,
                        log_config=log_config, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    else:
        from .app import create_app
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=None,
                    access_log=args.access_log, log_config=log_config,
                    timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    return 0
