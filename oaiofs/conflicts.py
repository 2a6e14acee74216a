"""Names for conflict copies: ``report (conflict alice@laptop 2026-11-21 10-15).txt``.

A person reading a folder should see at once what happened, who made the other
version and when. The name stays in the same folder as the original, keeps the
extension (so the file still opens with the right program) and respects the
255-byte name limit of :func:`oaiofs.protocol.normalize_file_path`.
"""
from __future__ import annotations

import datetime as dt
import posixpath

import re

from .protocol import MAX_NAME_BYTES

TIME_FORMAT = "%Y-%m-%d %H-%M"


def conflict_path(path: str, origin: str, when: dt.datetime, attempt: int = 1) -> str:
    """The conflict-copy path for ``path`` made by ``origin`` at ``when`` (local time shown).

    ``attempt`` > 1 appends a counter, for when that name is taken too.
    """
    folder, name = posixpath.split(path)
    stem, ext = _split_ext(name)
    label = f"conflict {_safe_origin(origin)} {when.astimezone().strftime(TIME_FORMAT)}"
    if attempt > 1:
        label += f" {attempt}"
    suffix = f" ({label}){ext}"
    stem = _truncate_utf8(stem, MAX_NAME_BYTES - len(suffix.encode("utf-8")))
    return posixpath.join(folder, stem + suffix) if folder else stem + suffix


def _split_ext(name: str) -> tuple[str, str]:
    """``a.tar.gz`` -> (``a.tar``, ``.gz``); a leading-dot name has no extension."""
    stem, ext = posixpath.splitext(name)
    if not stem or len(ext) > 16 or " " in ext:
        return name, ""
    return stem, ext


def _safe_origin(origin: str) -> str:
    """The origin without '/' or control characters, short enough for a file name."""
    cleaned = re.sub(r"[\x00-\x1f\x7f\\]", "", origin).replace("/", "\u2044").strip()
    return _truncate_utf8(cleaned or "unknown", 80)


def _truncate_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes without splitting a character."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max(0, max_bytes)].decode("utf-8", "ignore")
