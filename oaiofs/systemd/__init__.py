"""systemd unit files shipped with oaiofs, printed by ``oaiofs systemd-unit server|mount|server-env``."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
UNITS = {"server": "oaiofs-server.service", "mount": "oaiofs-mount@.service", "server-env": "server.env"}


def executable() -> str:
    """The ``oaiofs`` console script of this installation (absolute), as units need it."""
    beside = Path(sys.executable).parent / "oaiofs"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("oaiofs")
    return str(Path(found).absolute()) if found else f"{sys.executable} -m oaiofs"


def unit_text(kind: str, name: str | None = None) -> str:
    """The unit ``kind`` with this installation's executable (``mount`` with NAME: the instance's drive)."""
    text = (HERE / UNITS[kind]).read_text(encoding="utf-8").replace("@OAIOFS@", executable())
    if kind == "mount" and name:
        text = text.replace("%i", name)
    return text


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("systemd-unit", help="print a systemd unit: the server, or the mount template")
    p.add_argument("kind", choices=sorted(UNITS), help="server: oaiofs-server.service; mount: oaiofs-mount@.service "
                                                      "(template, instance = drive name); server-env: its settings")
    p.add_argument("name", nargs="?", help="mount: fill in this drive name instead of the template's %%i")
    p.set_defaults(func=cmd_systemd_unit)


def cmd_systemd_unit(args: argparse.Namespace) -> int:
    sys.stdout.write(unit_text(args.kind, args.name))
    return 0
