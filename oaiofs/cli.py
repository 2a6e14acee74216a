"""The ``oaiofs`` command line: a composition root that delegates to command modules.

Each command module exposes ``register(subparsers)``; it adds its sub-commands and
sets ``func`` on them (a callable taking the parsed ``argparse.Namespace`` and
returning an exit code). Modules are imported lazily so that ``oaiofs serve``
does not import FUSE and ``oaiofs mount`` does not import the server.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__

# module path -> the sub-commands it registers (for lazy import)
COMMAND_MODULES = {
    "oaiofs.server.commands": ("serve", "user", "db", "gc"),
    "oaiofs.drive_commands": ("mount", "umount", "status", "pin", "unpin"),
    "oaiofs.share_commands": ("share", "unshare", "access", "info", "conflicts", "retry", "discard"),
    "oaiofs.history_commands": ("versions", "restore"),   # restore without --version: the trash
    "oaiofs.trash_commands": ("trash",),
    "oaiofs.quickstart": ("quickstart",),
    "oaiofs.mount_helper": ("mount-helper",),
    "oaiofs.systemd": ("systemd-unit",),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or only the module that owns the sub-command ``only``."""
    parser = argparse.ArgumentParser(prog="oaiofs", description="oaio server, client and drive")
    parser.add_argument("--version", action="version", version=f"oaiofs {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, commands in COMMAND_MODULES.items():
        if only is not None and only not in commands:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # a part that is not installed must not break the others
            logging.getLogger(__name__).debug("cannot load %s: %s", module_name, exc)
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``oaiofs`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    known = {c for cmds in COMMAND_MODULES.values() for c in cmds}
    parser = build_parser(first if first in known else None)
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)
