"""POSIX metadata of synced files on this device: permission bits, mtimes (ns) and symbolic links.

Used by :class:`oaiofs.client.sync.Synchronizer`: uploads carry a file's mode and
mtime; a file whose bytes are unchanged but whose mode/mtime changed gets a
metadata-only call; downloads get the server's mode and mtime.

Symbolic links: ``register_folder``/``update_folder`` list the links below the
folder in ``_file_paths`` like files (:func:`list_entries`) and the push sends them
as links (``PUT links/{path}``; the link is never followed), with their target as
given — also one that is absolute or leads outside the folder: the server stores
targets verbatim and the drive shows such a link without following it. The pull
makes ``link`` entries symbolic links with the server's mtime, only when the target
stays inside the object's folder (``client_root/filez/<id>/`` or the folder the
object was registered from), by name and through other links; the others are
refused (reported, not created), and a local absence of a refused link never
deletes it on the server.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

from .. import protocol
from ..errors import InvalidValue
from .local_paths import list_files
from .safe_links import escaped, place_link

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


def refused(path: str, target: str) -> bool:
    """True if a server link ``path -> target`` is never created here (absolute or climbing out by name)."""
    try:
        protocol.validate_link_target(target)
    except InvalidValue:
        return True
    return protocol.link_escapes(path, target)


def make_link(root: Path, path: str, fd: dict[str, Any]) -> bool:
    """Create (or replace) the link ``root/path`` of the server entry ``fd`` with its mtime; False if unchanged.

    ``InvalidValue`` if the target leads outside ``root`` (the object's folder) or a folder
    on the way is a link.
    """
    target = fd.get("target") or ""
    link = root / path
    same = local_link(root, path) is not None and os.readlink(link) == target   # e.g. the one we uploaded
    if not same and refused(path, target):
        raise InvalidValue("link target leads outside client_root (the object's folder)",
                           {"path": path[:200], "target": target[:200]})
    changed = not same and place_link(root, path, target)
    when = fd.get("mtime_ns")
    if when is not None and link.lstat().st_mtime_ns != int(when):
        os.utime(link, ns=(int(when), int(when)), follow_symlinks=False)
    return changed


def drop_escaping_links(root: Path, paths: list[str]) -> list[str]:
    """Remove those of the links ``paths`` (just created) that lead outside ``root`` through other links."""
    links = [root / p for p in paths if (root / p).is_symlink()]
    bad = escaped(root, links)
    for link in bad:
        link.unlink()
    return [link.relative_to(root).as_posix() for link in bad]


def list_links(root: Path) -> list[str]:
    """Every symbolic link below ``root`` (to files, folders or nothing) as ``a/b`` paths; never followed."""
    found = []
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            full = os.path.join(folder, name)
            if os.path.islink(full):
                found.append(Path(full).relative_to(root).as_posix())
    return sorted(found)


def list_entries(root: Path) -> list[str]:
    """What ``register_folder``/``update_folder`` attach: regular files and symbolic links, sorted."""
    return sorted([*list_files(root), *list_links(root)])


def local_link(root: Path, path: str) -> Path | None:
    """``root/path`` if it is a symbolic link whose folders are no links (None otherwise)."""
    link = root / path
    if not link.is_symlink():
        return None
    folder = root
    for part in path.split("/")[:-1]:
        folder = folder / part
        if folder.is_symlink():
            raise InvalidValue("file path goes through a symbolic link", {"path": path[:200]})
    return link


def push_link(api: Any, oaio_id: str, path: str, link: Path, known: dict[str, Any] | None) -> dict[str, Any] | None:
    """Send the local link ``link`` if it differs from ``known``; the new ``obj.files`` entry, None if unchanged.

    The target goes as given; ``VersionConflict`` if the server's entry moved on since ``known``.
    """
    target = protocol.validate_link_target(os.readlink(link))
    mtime_ns = link.lstat().st_mtime_ns
    if known and known.get("kind") == protocol.KIND_LINK and known.get("target") == target:
        if known.get("mtime_ns") == mtime_ns:
            return None
        doc = api.set_file_meta(oaio_id, path, mtime_ns=mtime_ns)
    else:
        base = int((known or {}).get("version") or 0)
        doc = api.make_link(oaio_id, path, target, mtime_ns=mtime_ns, base_version=base)
    entry = next((fd for fd in doc.get("files", []) if fd.get("path") == path), None) or {}
    return {"kind": protocol.KIND_LINK, "target": target, "mtime_ns": mtime_ns, "size": len(target.encode()),
            "version": entry.get("version"), "mode": protocol.LINK_MODE, "sha256": None,
            "mtime": mtime_ns / 1e9}
