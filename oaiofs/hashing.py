"""sha256 of local files: one neutral home for the client library and the drive (pure, no I/O but reading)."""
from __future__ import annotations

import hashlib
import os

HASH_PIECE = 1 << 20          # bytes read per step


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a local file (read in 1 MiB pieces)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for piece in iter(lambda: handle.read(HASH_PIECE), b""):
            hasher.update(piece)
    return hasher.hexdigest()
