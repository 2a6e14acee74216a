"""Small helpers shared by the durability tests."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from oaiofs.vfs.journal import Op


class Recorder:
    """Collects the journal's callbacks."""

    def __init__(self) -> None:
        self.applied: list[tuple[Op, Any]] = []
        self.conflicts: list[tuple[Op, str]] = []
        self.failed: list[tuple[Op, Exception]] = []

    def kwargs(self) -> dict[str, Any]:
        return {"on_applied": lambda op, doc: self.applied.append((op, doc)),
                "on_conflict": lambda op, path: self.conflicts.append((op, path)),
                "on_failed": lambda op, err: self.failed.append((op, err))}


def write_random(path: Path, size: int, block: int = 1 << 20) -> str:
    """Fill ``path`` with ``size`` random bytes; return their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(block, left))
            digest.update(chunk)
            fh.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
