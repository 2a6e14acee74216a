"""Recognising a full disk, wherever it surfaces (blob writes, SQLite, PostgreSQL).

A full disk (``ENOSPC``/``EDQUOT``, SQLite's "database or disk is full",
PostgreSQL's SQLSTATE 53100) becomes :class:`~oaiofs.errors.InsufficientStorage`
(507 with the JSON error body) instead of a 500, and the server stays up.
"""
from __future__ import annotations

import errno

from ..errors import InsufficientStorage

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_FULL_TEXT = ("database or disk is full", "no space left on device", "disk quota exceeded")


def is_disk_full(exc: BaseException | None) -> bool:
    """True if ``exc`` (or what caused it) says the disk or quota is full."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return True
        if getattr(exc, "sqlstate", None) == "53100":            # psycopg: disk_full
            return True
        text = str(exc).lower()
        if any(t in text for t in _FULL_TEXT):
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
        seen += 1
    return False


def storage_full(message: str = "the server's storage is full; nothing was stored") -> InsufficientStorage:
    """The 507 error answered for a full disk."""
    return InsufficientStorage(message)
