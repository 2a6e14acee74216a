"""What the server's commands share (``oaiofs serve``/``db upgrade``/``gc`` in :mod:`.commands`, ``oaiofs user
…`` in :mod:`.admin_commands`): settings from the command line, migrating first, one clear line for a database
failure. Heavy imports stay inside the functions: ``oaiofs --help`` stays fast."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import ServerSettings


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """The server settings of a command line (the environment fills in the rest)."""
    from .settings import ServerSettings
    kwargs = {"db_url": args.db}
    if args.data is not None:
        kwargs["data_dir"] = args.data
    for name, attr in (("blobs", "blobs_url"), ("s3_endpoint", "s3_endpoint"), ("host", "host"),
                       ("port", "port"), ("workers", "workers"), ("token_ttl", "token_ttl_s"),
                       ("max_requests", "max_active_requests"), ("history_versions", "history_keep_versions"),
                       ("history_days", "history_keep_days")):
        if getattr(args, name, None) is not None:
            kwargs[attr] = getattr(args, name)
    if getattr(args, "trash_days", None) is not None:
        kwargs["trash_retention_s"] = args.trash_days * 86400.0
    settings = ServerSettings(**kwargs)
    settings.ensure_dirs()
    return settings


def database_error(exc: BaseException) -> None:
    """Print one clear line for a database failure (no traceback; URLs are not echoed)."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    print(f"cannot use the database: {reason}", file=sys.stderr)


def migrate(database_url: str) -> bool:
    """Upgrade the schema; on failure explain why and return False."""
    from sqlalchemy.exc import SQLAlchemyError
    from .db import run_migrations
    try:
        run_migrations(database_url)
    except (SQLAlchemyError, OSError) as exc:
        database_error(exc)
        return False
    return True
