"""Placing files and symbolic links under a root folder without ever going through a link.

Shared by cart extraction (:mod:`oaiofs.client.carts`) and the sync's pull
(:mod:`oaiofs.client.file_meta`). The rules:

- a file or link is only placed at ``root/rel`` when no folder on the way from
  ``root`` is a symbolic link (``prepare_parent``): nothing is written through a link;
- a link target must be relative and stay inside ``root`` counted from the link's
  folder (``protocol.link_escapes``, purely by name: ``..`` may not climb out);
- after a batch of links is placed, ``escaped`` re-checks them with the links
  resolved (``a -> sub/..`` is harmless alone, but not next to ``sub -> ..``):
  a link that leads outside ``root`` that way is removed again.
"""
from __future__ import annotations

import os
from pathlib import Path

from .. import protocol
from ..errors import InvalidValue


def prepare_parent(root: Path, rel: str) -> Path:
    """``root/rel`` with its folders created; ``InvalidValue`` if one of them is (or leads through) a link."""
    rel = protocol.normalize_file_path(rel)
    folder = root
    for part in rel.split("/")[:-1]:
        folder = folder / part
        if folder.is_symlink():
            raise InvalidValue(f"{rel[:200]!r} would be written through the symbolic link {part!r}",
                               {"path": rel[:200]})
        if not folder.exists():
            folder.mkdir()
        elif not folder.is_dir():
            raise InvalidValue(f"{rel[:200]!r}: {part!r} is not a folder", {"path": rel[:200]})
    return root / rel


def check_target(rel: str, target: str) -> None:
    """Refuse (``InvalidValue``) a link target that is absolute or climbs out of the tree of ``rel``."""
    protocol.validate_link_target(target)
    if protocol.link_escapes(rel, target):
        raise InvalidValue("link target leads outside the folder it is downloaded into",
                           {"path": rel[:200], "target": target[:200]})


def place_link(root: Path, rel: str, target: str) -> bool:
    """Create (or replace a file/link by) ``root/rel -> target``; False if it already is that link."""
    check_target(rel, target)
    link = prepare_parent(root, rel)
    if link.is_symlink():
        if os.readlink(link) == target:
            return False
        link.unlink()
    elif link.is_dir():
        raise InvalidValue(f"{rel[:200]!r} is a folder here, not replaced by a link", {"path": rel[:200]})
    elif link.exists():
        link.unlink()
    os.symlink(target, link)
    return True


def escaped(root: Path, links: list[Path]) -> list[Path]:
    """Those of ``links`` that resolve (following other links) to a place outside ``root``."""
    real_root = os.path.realpath(root)
    out = []
    for link in links:
        real = os.path.realpath(link)
        if os.path.commonpath([real_root, real]) != real_root:
            out.append(link)
    return out
