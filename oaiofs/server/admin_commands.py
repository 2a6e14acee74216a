"""``oaiofs user list | passwd | del | disable | enable | admin`` — server administration on the database.

Like ``oaiofs user add`` these work directly on the server's database (``--data``/``--db``),
so they need no running server and no admin login; the same operations are in the admin API
(:mod:`oaiofs.server.routes_admin`). The logic lives in :mod:`oaiofs.server.admin`.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any, Callable

PASSWORD_ENV = "OAIOFS_PASSWORD"


def register_user_actions(user_sub: Any, add_storage_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the administration actions to ``oaiofs user``."""
    p = user_sub.add_parser("list", help="list users (admin, disabled, objects created, subscriptions)")
    add_storage_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=cmd_user_list)

    p = user_sub.add_parser("passwd", help="set a user's password (from OAIOFS_PASSWORD or a prompt); "
                                           "their tokens are revoked")
    p.add_argument("name")
    add_storage_args(p)
    p.set_defaults(func=cmd_user_passwd)

    p = user_sub.add_parser("del", help="delete a user: objects others subscribe to are transferred to the "
                                        "subscriber with the highest right, objects only they see are deleted")
    p.add_argument("name")
    add_storage_args(p)
    p.add_argument("--json", action="store_true", help="print what was transferred and deleted as JSON")
    p.set_defaults(func=cmd_user_del)

    for action, disabled in (("disable", True), ("enable", False)):
        p = user_sub.add_parser(action, help=("refuse the user's logins, tokens and Basic auth (401); "
                                              "their mounts go read-only offline") if disabled
                                else "let a disabled user in again")
        p.add_argument("name")
        add_storage_args(p)
        p.set_defaults(func=cmd_user_disable, disabled=disabled)

    p = user_sub.add_parser("admin", help="make a user an administrator (admin API), or --revoke")
    p.add_argument("name")
    p.add_argument("--revoke", action="store_true", help="take the admin right away")
    add_storage_args(p)
    p.set_defaults(func=cmd_user_admin)


def _run(args: argparse.Namespace, work: Callable[[Any], Any]) -> tuple[int, Any]:
    """Run ``work(session)`` in one transaction on the migrated database; (exit code, result)."""
    from sqlalchemy.exc import SQLAlchemyError

    from ..errors import OaioError
    from .command_common import database_error as _database_error, migrate as _migrate, settings_from_args as _settings
    from .db import make_engine, make_sessionmaker

    settings = _settings(args)
    if not _migrate(settings.database_url):
        return 1, None
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine).begin() as db:
            return 0, work(db)
    except OaioError as err:
        print(err.message, file=sys.stderr)
        return (2 if err.http_status in (400, 422) else 1), None
    except SQLAlchemyError as exc:
        _database_error(exc)
        return 1, None
    finally:
        engine.dispose()


def read_new_password(name: str) -> str | None:
    """From ``OAIOFS_PASSWORD``, else prompted twice; None (after saying why) if there is none."""
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        try:
            password = getpass.getpass(f"new password for {name}: ")
            repeated = getpass.getpass("repeat the password: ")
        except EOFError:
            print(f"no password given: type it at the prompt or set {PASSWORD_ENV}", file=sys.stderr)
            return None
        if password != repeated:
            print("the passwords differ", file=sys.stderr)
            return None
    if not password:
        print("the password must not be empty", file=sys.stderr)
        return None
    return password


def cmd_user_list(args: argparse.Namespace) -> int:
    from . import admin

    code, users = _run(args, admin.list_users)
    if code:
        return code
    if args.json:
        print(json.dumps(users, indent=2))
        return 0
    if not users:
        print("no users (create one with 'oaiofs user add NAME')")
        return 0
    width = max(len(u["username"]) for u in users)
    for u in users:
        flags = ", ".join(f for f, on in (("admin", u["is_admin"]), ("DISABLED", u["disabled"])) if on)
        print(f"{u['username']:<{width}}  {u['objects']:>5} objects  {u['subscriptions']:>5} subscriptions"
              + (f"  [{flags}]" if flags else ""))
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    from . import admin

    password = read_new_password(args.name)
    if password is None:
        return 2
    code, _ = _run(args, lambda db: admin.set_password(db, args.name, password))
    if not code:
        print(f"password of {args.name!r} changed (their other sessions must log in again)")
    return code


def cmd_user_del(args: argparse.Namespace) -> int:
    from . import admin

    code, result = _run(args, lambda db: admin.delete_user(db, args.name))
    if code:
        return code
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"user {args.name!r} deleted: {len(result['transferred'])} shared object(s) transferred, "
          f"{len(result['deleted'])} object(s) deleted")
    for oaio_id, heir in result["transferred"].items():
        print(f"  {oaio_id} -> {heir}")
    return 0


def cmd_user_disable(args: argparse.Namespace) -> int:
    from . import admin

    code, _ = _run(args, lambda db: admin.set_disabled(db, args.name, args.disabled))
    if not code:
        print(f"user {args.name!r} " + ("disabled: every request of theirs answers 401" if args.disabled
                                        else "enabled"))
    return code


def cmd_user_admin(args: argparse.Namespace) -> int:
    from . import admin

    code, _ = _run(args, lambda db: admin.set_admin(db, args.name, not args.revoke))
    if not code:
        print(f"user {args.name!r} is {'no longer ' if args.revoke else ''}an administrator")
    return code
