"""``oaiofs trash [PATH] [--json] [--empty]`` and restoring from the trash (``oaiofs restore PATH``).

Like :mod:`oaiofs.share_commands`: on a PATH in a mount the running mount does the work
(no password; :mod:`oaiofs.vfs.trash_control`); with ``--server URL --user NAME`` PATH is an
object id, or ``<object id>/<path in it>`` for restore. A deleted PATH does not exist in the
mount any more, so the request goes to its nearest existing folder with the rest of the path.

``restore`` belongs to the version-history commands (``oaiofs restore PATH --version N``);
without ``--version`` that command calls :func:`restore_from_trash`. Until the two are merged
this module registers a ``restore`` of its own with the same arguments (minus ``--version``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from .share_commands import CommandError, _direct, _run, find_mount, mount_request

PAGE = 100


def register(subparsers: Any) -> None:
    """Add ``trash`` to the ``oaiofs`` parser (``restore`` lives in history_commands)."""
    def remote(p: argparse.ArgumentParser) -> None:
        p.add_argument("--server", help="talk to this server directly: PATH is then an object id")
        p.add_argument("--user", help="your user name on --server (password: OAIOFS_PASSWORD or a prompt)")

    p = subparsers.add_parser("trash", help="what was deleted under PATH (an object folder) or in the whole "
                                            "drive: who, when, size; --empty empties it (creator only)")
    p.add_argument("path", metavar="PATH", nargs="?", help="a path in a mount (default: the mount), or an object id")
    p.add_argument("--json", action="store_true", help="a JSON list of trash items")
    p.add_argument("--empty", action="store_true", help="remove the items for good (only the creator of an "
                                                          "object; for the whole drive: the objects you created)")
    remote(p)
    p.set_defaults(func=cmd_trash)
    # `oaiofs restore PATH` (no --version) is registered by history_commands and calls restore_from_trash


# ---------------------------------------------------------------- where a (deleted) path lives
def split_existing(path: Path) -> tuple[Path, str]:
    """The nearest existing folder of ``path`` in a mount and the rest of the path below it."""
    absolute = Path(os.path.abspath(path))
    existing = absolute
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    find_mount(existing)
    rest = absolute.relative_to(existing).as_posix()
    return Path(os.path.realpath(existing)), "" if rest == "." else rest


def _default_mount() -> Path:
    from .drive_commands import oaiofs_mounts

    mounts = oaiofs_mounts()
    if len(mounts) != 1:
        raise CommandError("name a PATH in the mount (mounted: " + (", ".join(map(str, mounts)) or "none") + ")", 2)
    return Path(mounts[0])


def _check_remote(args: argparse.Namespace) -> None:
    if getattr(args, "user", None) and not getattr(args, "server", None):
        raise CommandError("--user needs --server", 2)


# ---------------------------------------------------------------- trash
def cmd_trash(args: argparse.Namespace) -> int:
    return _run(_trash, args)


def _trash(args: argparse.Namespace) -> int:
    from .client import trash_api

    _check_remote(args)
    if args.server:
        oaio_id = args.path or None
        if args.empty:
            removed = _direct(args, lambda api, _p: trash_api.empty_trash(api, oaio_id))
            print(f"oaiofs: {removed} trash item(s) removed for good")
            return 0
        items = _direct(args, lambda api, _p: trash_api.list_trash(api, oaio_id))["items"]
        for item in items:
            item["where"] = item["oaio_id"] + ("/" + item["path"] if item["path"] else "")
        return _print(items, args.json)
    target, rest = split_existing(Path(args.path)) if args.path else (_default_mount(), "")
    mount = find_mount(target)
    if args.empty:
        if rest:
            raise CommandError(f"{args.path} does not exist: --empty takes an object folder or the mount", 2)
        result = mount_request(target, "empty_trash", "empty the trash of")
        print(f"oaiofs: {result.get('removed', 0)} trash item(s) removed for good")
        return 0
    items: list[dict[str, Any]] = []
    while True:
        page = mount_request(target, "trash", "list the trash of", offset=len(items), limit=PAGE)
        items += page.get("items", [])
        if not page.get("items") or len(items) >= page.get("total", 0):
            break
    at_root = target == mount
    if rest:                                  # a deleted folder: what was deleted at or under it
        inner = rest.partition("/")[2] if at_root else rest
        folder = rest.partition("/")[0] if at_root else None
        base = "" if at_root else target.relative_to(mount).as_posix().partition("/")[2]
        prefix = "/".join(p for p in (base, inner) if p)
        items = [i for i in items if (folder is None or i["folder"] == folder) and
                 (not prefix or _related(i["path"], prefix))]
    for item in items:
        item["where"] = str(mount / item["folder"] / item["path"]) if item["path"] else str(mount / item["folder"])
    return _print(items, args.json)


def _related(path: str, prefix: str) -> bool:
    """An item at or under ``prefix``, or a deleted folder that held it."""
    return path == prefix or path.startswith(prefix + "/") or (bool(path) and prefix.startswith(path + "/"))


def _size(n: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


def _print(items: list[dict[str, Any]], as_json: bool) -> int:
    if as_json:
        print(json.dumps(items, indent=2, ensure_ascii=False))
        return 0
    if not items:
        print("the trash is empty")
        return 0
    print(f"{'DELETED (UTC)':<19}  {'BY':<12}  {'SIZE':>7}  {'KEPT UNTIL':<10}  WHAT")
    for i in items:
        when = dt.datetime.fromisoformat(i["deleted"]).strftime("%Y-%m-%d %H:%M:%S")
        what = i["where"] + ("/" if i["entry_kind"] in ("dir", "object") else "")
        kind = "object" if i["kind"] == "object" else f"{i['files']} file(s)" if i["entry_kind"] == "dir" else ""
        print(f"{when:<19}  {i['deleted_by']:<12}  {_size(i['size']):>7}  {i['expires'][:10]:<10}  {what}"
              + (f"  ({kind})" if kind else ""))
    return 0


# ---------------------------------------------------------------- restore
def restore_from_trash(args: argparse.Namespace) -> int:
    """``oaiofs restore PATH`` without ``--version``: bring PATH back from the trash (exit 0, 1 or 2)."""
    return _run(_restore, args)


def _restore(args: argparse.Namespace) -> int:
    from .client import trash_api

    _check_remote(args)
    if getattr(args, "server", None):
        oaio_id, _sep, inner = str(args.path).partition("/")
        result = _direct(args, lambda api, _p: trash_api.restore(api, oaio_id, inner or None))
        result.pop("object", None)
        shown = oaio_id + ("/" + result["restored_as"] if result.get("restored_as") else "")
    else:
        target, rest = split_existing(Path(args.path))
        result = mount_request(target, "restore", "restore", rest=rest)
        mount = find_mount(target)
        folder = result.get("folder") or result.get("restored_as") or ""
        shown = str(mount / folder / result["restored_as"]) if result.get("kind") == "path" else str(mount / folder)
    result["restored_at"] = shown
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2, ensure_ascii=False))
    elif result.get("path") and result.get("restored_as") and result["restored_as"] != result["path"]:
        print(f"oaiofs: {args.path} exists again: restored beside it as {shown}")
    else:
        print(f"oaiofs: restored {shown}")
    return 0

