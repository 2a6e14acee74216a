"""``oaiofs versions`` and ``oaiofs restore``: the version history of files and values.

On a PATH inside a mount these ask the running mount (``user.oaio.control``, see
:mod:`oaiofs.vfs.history_control`): no password. With ``--server URL --user NAME`` the
PATH argument is an object id and FILE the path inside it (none or ``values.json``: the
object's values); the password comes from ``OAIOFS_PASSWORD`` or a prompt.

``oaiofs restore PATH`` without ``--version`` brings a deleted path back from the trash
(:func:`oaiofs.trash_commands.restore_from_trash`).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from . import protocol
from .share_commands import CommandError, _direct, _run, mount_request


def register(subparsers: Any) -> None:
    """Add ``versions`` and ``restore`` to the ``oaiofs`` parser."""
    def remote(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", metavar="FILE", nargs="?", default=None,
                       help="with --server: the path inside the object (also as OBJECT_ID/FILE; none or "
                            "values.json: its values)")
        p.add_argument("--server", help="talk to this server directly: PATH is then an object id")
        p.add_argument("--user", help="your user name on --server (password: OAIOFS_PASSWORD or a prompt)")

    p = subparsers.add_parser("versions", help="list the kept versions of a file (or of an object's values.json)",
                              description="List the versions the server keeps of a file, newest first (who, "
                                          "when, size, sha256); OBJECT/values.json lists the object's values "
                                          "versions. `oaiofs restore PATH --version N` brings one back.")
    p.add_argument("path", metavar="PATH", help="a file or values.json in a mount (or an object id)")
    p.add_argument("--json", action="store_true",
                   help="a JSON list of {version, size, sha256, modified, author, current, restored_from, ...}")
    remote(p)
    p.set_defaults(func=cmd_versions)

    p = subparsers.add_parser("restore", help="restore version N of a file or values.json (--version N) "
                                              "or a deleted path from the trash",
                              description="With --version N: make kept version N of the file (or of the "
                                          "object's values) the current one again, as a new version that "
                                          "every mount sees; needs the right U, D or C. Without --version: "
                                          "bring a deleted path back from the trash.")
    p.add_argument("path", metavar="PATH", help="a file or values.json in a mount (or an object id)")
    p.add_argument("--version", type=str, default=None, metavar="N", dest="restore_version",
                   help="the version to restore (see oaiofs versions)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    remote(p)
    p.set_defaults(func=cmd_restore)


def _check_version(raw: str) -> int:
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > 2 ** 31 - 1:
        raise CommandError(f"--version must be a version number from `oaiofs versions` (not {raw!r})", 2)
    return int(text)


def _split_remote(args: argparse.Namespace) -> None:
    """--server: ``OBJECT_ID FILE`` or ``OBJECT_ID/FILE`` (object ids never hold a '/'); sets path and file."""
    if args.server and args.file is None and "/" in str(args.path):
        args.path, _sep, args.file = str(args.path).partition("/")


def _remote_file(args: argparse.Namespace) -> str | None:
    """The path inside the object for --server (None: the values)."""
    _split_remote(args)
    if args.file in (None, "", protocol.VALUES_FILE):
        return None
    return args.file


# ---------------------------------------------------------------- versions
def cmd_versions(args: argparse.Namespace) -> int:
    return _run(_versions, args)


def _versions(args: argparse.Namespace) -> int:
    if args.server:
        from .client import history
        file = _remote_file(args)
        doc = _direct(args, lambda api, oid: history.values_versions(api, oid) if file is None
                      else history.file_versions(api, oid, file))
    else:
        if args.file is not None:
            raise CommandError("FILE is only for --server (on a mount, name the file itself)", 2)
        doc = mount_request(Path(args.path), "versions", "list the versions of")
    versions = doc.get("versions", [])
    if args.json:
        print(json.dumps(versions, indent=2))
        return 0
    print(_table(versions))
    if doc.get("truncated"):
        print(f"(only the newest {len(versions)} shown; use --server/--user for all)")
    return 0


def _when(iso: str | None) -> str:
    if not iso:
        return "?"
    try:
        return dt.datetime.fromisoformat(iso).astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def _table(versions: list[dict[str, Any]]) -> str:
    rows = [("VERSION", "MODIFIED (UTC)", "AUTHOR", "SIZE", "SHA256", "")]
    for v in versions:
        note = "current" if v.get("current") else ""
        if v.get("restored_from") is not None:
            note = (note + ", " if note else "") + f"restored from {v['restored_from']}"
        rows.append((str(v.get("version")), _when(v.get("modified")), v.get("author") or "(unknown)",
                     str(v.get("size")), (v.get("sha256") or "")[:12], note))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + ("  " + r[5] if r[5] else "")
                     for r in rows).rstrip()


# ---------------------------------------------------------------- restore
def cmd_restore(args: argparse.Namespace) -> int:
    if args.restore_version is None:
        if args.server and args.file is not None:            # the trash takes OBJECT_ID/PATH
            args.path, args.file = f"{args.path}/{args.file}", None
        try:
            from .trash_commands import restore_from_trash       # the trash (issue 17, its own module)
        except ImportError:
            print("oaiofs: restoring from the trash is not available in this build; "
                  "to restore an older version give --version N (see oaiofs versions PATH)", file=sys.stderr)
            return 1
        return int(restore_from_trash(args) or 0)
    return _run(_restore, args)


def _restore(args: argparse.Namespace) -> int:
    version = _check_version(args.restore_version)
    if args.server:
        from .client import history
        file = _remote_file(args)

        def call(api: Any, oid: str) -> dict[str, Any]:
            if file is None:
                doc = history.restore_values(api, oid, version)
                return {"oaio_id": oid, "path": protocol.VALUES_FILE, "restored_from": version,
                        "version": doc.get("version")}
            doc = history.restore_file(api, oid, file, version)
            return {"oaio_id": oid, "path": file, "restored_from": version, "version": doc.get("version"),
                    "sha256": doc.get("sha256"), "size": doc.get("size")}
        result = _direct(args, call)
        where = f"{args.path}/{result['path']}"
    else:
        if args.file is not None:
            raise CommandError("FILE is only for --server (on a mount, name the file itself)", 2)
        result = mount_request(Path(args.path), "restore_version", "restore", version=version)
        result.pop("ok", None)
        where = args.path
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"oaiofs: {where}: version {version} restored as the new version {result.get('version')}")
    return 0
