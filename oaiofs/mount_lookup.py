"""Which oaiofs mount holds a path: the lookup the command-line tools share (``share_commands``,
``drive_commands``, ``trash_commands``), kept below them so they need not import each other."""
from __future__ import annotations

import os
from pathlib import Path

FSTYPE = "fuse.oaiofs"


class CommandError(Exception):
    """A failure to report as ``oaiofs: <message>`` with exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def oaiofs_mounts() -> list[Path]:
    """Mountpoints of oaiofs file systems (from /proc/mounts)."""
    out = []
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == FSTYPE:
                    out.append(Path(parts[1].replace("\\040", " ")))
    except OSError:
        pass
    return out


def find_mount(path: Path) -> Path:
    """The oaiofs mountpoint that contains ``path``, or ``CommandError``."""
    absolute = Path(os.path.realpath(path))
    mounts = sorted(oaiofs_mounts(), key=lambda m: len(str(m)), reverse=True)
    for mount in mounts:
        if absolute == mount or mount in absolute.parents:
            if not os.path.lexists(absolute):
                raise CommandError(f"{path}: no such file or folder in the mount {mount}")
            return mount
    raise CommandError(f"{path} is not inside an oaiofs mount (mounted: "
                       f"{', '.join(map(str, mounts)) or 'none'}); or use --server/--user with an object id")
