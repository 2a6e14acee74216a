"""Blob keys and staging names: the checks every blob store shares (no store imports its package)."""
from __future__ import annotations

import re

from ...errors import InvalidValue

READ_CHUNK = 1 << 20                 # bytes per piece when streaming a blob
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_UPLOAD_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_KEY_RE = re.compile(r"^sha256/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}$")


def blob_key(sha256: str) -> str:
    """The store key of the blob whose bytes hash to ``sha256`` (``sha256/ab/cd/abcd…``)."""
    if not isinstance(sha256, str) or not _SHA256_RE.match(sha256):
        raise InvalidValue("sha256 must be 64 lower-case hex digits")
    return f"sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def check_key(key: str) -> str:
    """Return ``key`` if it is a well-formed blob key (path-traversal proof), else raise."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise InvalidValue("malformed blob key", {"key": str(key)[:100]})
    return key


def check_upload_id(upload_id: str) -> str:
    """Return ``upload_id`` if it is safe as a staging name, else raise ``InvalidValue``."""
    if not isinstance(upload_id, str) or not _UPLOAD_ID_RE.match(upload_id):
        raise InvalidValue("malformed upload id")
    return upload_id
