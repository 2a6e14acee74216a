"""POSIX metadata of synced files on this device: permission bits, mtimes (ns) and symbolic links.

Used by :class:`oaiofs.client.sync.Synchronizer`: uploads carry a file's mode and
mtime; a file whose bytes are unchanged but whose mode/mtime changed gets a
metadata-only call; downloads get the server's mode and mtime; ``link`` entries
become symbolic links, unless their target leads outside ``client_root``.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

from .. import protocol
from ..errors import InvalidValue

log = logging.getLogger(__name__)


def local_meta(path: Path) -> dict[str, int]:
    """``{"mode", "mtime_ns"}`` of a local file, as the server stores them."""
    st = path.stat()
    return {"mode": stat.S_IMODE(st.st_mode) & 0o777, "mtime_ns": st.st_mtime_ns}


def meta_changed(path: Path, known: dict[str, Any] | None) -> dict[str, int]:
    """The mode/mtime of ``path`` that differ from what the last sync recorded (empty: none)."""
    if not known or known.get("mode") is None:
        return {}
    now = local_meta(path)
    was = {"mode": int(known["mode"]) & 0o777, "mtime_ns": known.get("mtime_ns")}
    return {k: v for k, v in now.items() if was[k] != v}


def apply_meta(path: Path, fd: dict[str, Any]) -> None:
    """Give a downloaded file the server's mode bits and mtime (missing fields: left as they are)."""
    if fd.get("mode") is not None:
        os.chmod(path, int(fd["mode"]) & 0o777)
    if fd.get("mtime_ns") is not None:
        os.utime(path, ns=(int(fd["mtime_ns"]), int(fd["mtime_ns"])))


def check_link(client_root: Path, link: Path, target: str) -> None:
    """Refuse (``InvalidValue``) a link target that is absolute or climbs out of ``client_root``."""
    rel = os.path.relpath(link, client_root)
    if rel.startswith(".."):
        raise InvalidValue("link lies outside client_root", {"path": str(link)})
    protocol.validate_link_target(target)
    if protocol.link_escapes(Path(rel).as_posix(), target):
        raise InvalidValue("link target leads outside client_root", {"path": rel, "target": target[:200]})


def make_link(client_root: Path, link: Path, target: str) -> bool:
    """Create (or replace) the symbolic link ``link -> target``; False if it already is that link."""
    check_link(client_root, link, target)
    if link.is_symlink() and os.readlink(link) == target:
        return False
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.is_file():
        link.unlink()
    os.symlink(target, link)
    return True
