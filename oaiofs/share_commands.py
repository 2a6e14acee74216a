"""``oaiofs share | unshare | access | info | conflicts | retry | discard``.

On a PATH inside a mount these ask the running mount (extended attributes, see
:mod:`oaiofs.vfs.control`): no password, the mount's login is used. With
``--server URL --user NAME`` the PATH argument is an object id and the command talks
to the server directly (password from ``OAIOFS_PASSWORD`` or a prompt).
"""
from __future__ import annotations

import argparse
import errno
import getpass
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from . import protocol
from .mount_lookup import CommandError as CommandError
from .mount_lookup import find_mount as find_mount

PASSWORD_ENV = "OAIOFS_PASSWORD"
RIGHT_NAMES = {"C": "creator", "D": "delete", "U": "update", "r": "read", "x": "none"}


def register(subparsers: Any) -> None:
    """Add the sharing, info and failure commands to the ``oaiofs`` parser."""
    def remote(p: argparse.ArgumentParser) -> None:
        p.add_argument("--server", help="talk to this server directly: PATH is then an object id")
        p.add_argument("--user", help="your user name on --server (password: OAIOFS_PASSWORD or a prompt)")

    p = subparsers.add_parser("share", help="give USER the right r (read), U (update) or D (delete); x removes")
    p.add_argument("path", metavar="PATH", help="a path in an object folder of a mount (or an object id)")
    p.add_argument("username", metavar="USER")
    p.add_argument("right", metavar="RIGHT", choices=["r", "U", "D", "x"])
    remote(p)
    p.set_defaults(func=cmd_share)

    p = subparsers.add_parser("unshare", help="remove USER's access (your own name: leave a share)")
    p.add_argument("path", metavar="PATH")
    p.add_argument("username", metavar="USER")
    remote(p)
    p.set_defaults(func=cmd_unshare)

    p = subparsers.add_parser("access", help="who has which right to the object of PATH")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="a JSON list of {username, access_right}")
    remote(p)
    p.set_defaults(func=cmd_access)

    p = subparsers.add_parser("info", help="object id, version, right, owner and sync state of PATH")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true")
    remote(p)
    p.set_defaults(func=cmd_info)

    p = subparsers.add_parser("conflicts", help="list the conflict copies the mounts made (--clear forgets them)")
    p.add_argument("mountpoint", type=Path, nargs="?")
    p.add_argument("--clear", action="store_true", help="forget the list (the conflict copies stay)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_conflicts)

    p = subparsers.add_parser("retry", help="upload the failed changes at or under PATH again now")
    p.add_argument("path", type=Path, metavar="PATH")
    p.set_defaults(func=cmd_retry)

    p = subparsers.add_parser("discard", help="drop the failed changes at or under PATH; their bytes are kept "
                                              "as a conflict copy in <cache>/rescued unless --really")
    p.add_argument("path", type=Path, metavar="PATH")
    p.add_argument("--really", action="store_true", help="do not keep the bytes")
    p.set_defaults(func=cmd_discard)


def _run(func: Any, args: argparse.Namespace) -> int:
    try:
        return func(args)
    except CommandError as err:
        print(f"oaiofs: {err}", file=sys.stderr)
        return err.code


# ---------------------------------------------------------------- the mount channel
def _xattr_error(path: Path, exc: OSError, what: str) -> CommandError:
    if exc.errno in (errno.ENOTSUP, errno.ENOSYS):
        return CommandError(f"cannot {what} {path}: the drive was mounted with --no-xattrs; remount without it")
    return CommandError(f"cannot {what} {path}: {exc.strerror}")


def mount_read(path: Path, name: str, what: str) -> Any:
    """The JSON (or text) the mount answers for xattr ``name`` on ``path``."""
    find_mount(path)
    try:
        raw = os.getxattr(path, name)
    except OSError as exc:
        raise _xattr_error(path, exc, what) from None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def mount_request(path: Path, op: str, what: str, **fields: Any) -> dict[str, Any]:
    """Run ``op`` in the mount of ``path``; its result, or ``CommandError`` with the mount's message."""
    find_mount(path)
    nonce = uuid.uuid4().hex
    request = json.dumps({"op": op, "nonce": nonce, **fields}).encode("utf-8")
    try:
        os.setxattr(path, protocol.XATTR_CONTROL, request)
    except OSError as exc:
        result = _result(path, nonce)
        if result is not None and not result.get("ok"):
            raise CommandError(f"cannot {what} {path}: {result.get('message')}") from None
        raise _xattr_error(path, exc, what) from None
    return _result(path, nonce) or {"ok": True}


def _result(path: Path, nonce: str) -> dict[str, Any] | None:
    try:
        return json.loads(os.getxattr(path, protocol.XATTR_RESULT_PREFIX + nonce))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- the direct channel
def _api(args: argparse.Namespace) -> Any:
    from .client.api import ApiClient

    if not args.user:
        raise CommandError("--server needs --user", 2)
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        if not sys.stdin.isatty():
            raise CommandError(f"no password: set {PASSWORD_ENV} or run in a terminal", 2)
        password = getpass.getpass(f"password for {args.user} at {args.server}: ")
    return ApiClient(args.server, args.user, password, app_id="oaiofs-cli")


def _direct(args: argparse.Namespace, call: Any) -> Any:
    from .errors import OaioError

    if args.user and not args.server:
        raise CommandError("--user needs --server", 2)
    api = _api(args)
    try:
        return call(api, args.path)
    except OaioError as err:
        raise CommandError(err.message.removeprefix(f"HTTP {err.http_status}: ")) from None
    finally:
        api.close()


# ---------------------------------------------------------------- commands
def cmd_share(args: argparse.Namespace) -> int:
    return _run(_share, args)


def cmd_unshare(args: argparse.Namespace) -> int:
    args.right = protocol.NO_ACCESS_RIGHT
    return _run(_share, args)


def _share(args: argparse.Namespace) -> int:
    what = "unshare" if args.right == protocol.NO_ACCESS_RIGHT else "share"
    if args.server:
        _direct(args, lambda api, oid: api.set_subscription(oid, args.username, args.right))
        target = args.path
    else:
        mount_request(Path(args.path), "share", what, user=args.username, right=args.right)
        target = args.path
    if args.right == protocol.NO_ACCESS_RIGHT:
        print(f"oaiofs: {args.username} no longer has access to {target}")
    else:
        print(f"oaiofs: {args.username} now has the right {args.right} ({RIGHT_NAMES[args.right]}) on {target}")
    return 0


def cmd_access(args: argparse.Namespace) -> int:
    return _run(_access, args)


def _access(args: argparse.Namespace) -> int:
    if args.server:
        entries = _direct(args, lambda api, oid: api.subscriptions(oid))
    else:
        entries = mount_read(Path(args.path), protocol.XATTR_ACCESS, "list the access of")
    entries = sorted(entries, key=protocol.userz_access_sort_key)
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    for entry in entries:
        right = entry["access_right"]
        print(f"{right}  {entry['username']}  ({RIGHT_NAMES.get(right, right)})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    return _run(_info, args)


def _info(args: argparse.Namespace) -> int:
    if args.server:
        doc = _direct(args, lambda api, oid: api.get_object(oid))
        info = {"oaio_id": doc["oaio_id"], "name": (doc.get("values") or {}).get("_name"), "kind": "object",
                "version": doc.get("version"), "object_version": doc.get("version"),
                "access_right": doc.get("access_right"), "owner": doc.get("owner"), "created": doc.get("created"),
                "files": len([f for f in doc.get("files", []) if f.get("kind", "file") == "file"]),
                "sync": "server"}
    else:
        info = mount_read(Path(args.path), protocol.XATTR_INFO, "describe")
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    right = info.get("access_right")
    lines = [f"object id:  {info.get('oaio_id')}",
             f"name:       {info.get('name')}" + (f"  (path {info['path']})" if info.get("path") else ""),
             f"version:    {info.get('version')}" + (f" (object version {info.get('object_version')})"
                                                     if info.get("kind") == "file" else ""),
             f"right:      {right} ({RIGHT_NAMES.get(right or '', '?')})",
             f"owner:      {info.get('owner')}",
             f"sync state: {info.get('sync')}"]
    if info.get("pending_changes") or info.get("failed_changes"):
        lines.append(f"changes:    {info.get('pending_changes', 0)} pending, {info.get('failed_changes', 0)} failed")
    if info.get("online") is False:
        lines.append("            (the mount is OFFLINE)")
    print("\n".join(lines))
    return 0


def cmd_conflicts(args: argparse.Namespace) -> int:
    return _run(_conflicts, args)


def _conflicts(args: argparse.Namespace) -> int:
    from .drive_commands import oaiofs_mounts, read_status

    mounts = [args.mountpoint.absolute()] if args.mountpoint else oaiofs_mounts()
    if not mounts:
        raise CommandError("no oaiofs mount found")
    out: list[dict[str, Any]] = []
    for mountpoint in mounts:
        status = read_status(mountpoint)
        if status is None:
            raise CommandError(f"{mountpoint} is not a mounted oaiofs drive")
        names = status.get("names", {})
        for c in status.get("conflicts", []):
            folder = mountpoint / names.get(c.get("oaio_id"), c.get("oaio_id", "?"))
            out.append(dict(c, mountpoint=str(mountpoint), original=str(folder / (c.get("path") or "")),
                            copy=str(folder / (c.get("conflict_path") or ""))))
        if args.clear:
            result = mount_request(mountpoint, "clear_conflicts", "clear the conflicts of")
            print(f"oaiofs: {mountpoint}: {result.get('cleared', 0)} conflict record(s) cleared "
                  "(the conflict copies stay)", file=sys.stderr)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    elif not args.clear:
        if not out:
            print("no conflicts")
        for c in out:
            print(f"{c['original']}\n  changed elsewhere too; the local version was kept as {c['copy']}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    return _run(_retry, args)


def _retry(args: argparse.Namespace) -> int:
    result = mount_request(args.path, "retry", "retry")
    print(f"oaiofs: {result.get('retried', 0)} failed change(s) queued again: "
          + ", ".join(result.get("paths", [])))
    return 0


def cmd_discard(args: argparse.Namespace) -> int:
    return _run(_discard, args)


def _discard(args: argparse.Namespace) -> int:
    result = mount_request(args.path, "discard", "discard", really=bool(args.really))
    print(f"oaiofs: {result.get('discarded', 0)} failed change(s) discarded")
    for path in result.get("kept", []):
        print(f"  local bytes kept in {path}")
    return 0
