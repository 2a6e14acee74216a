"""How ``OaioClient`` keeps both sides of a conflict (built on the drive's pure merge helpers).

* Values: :func:`oaiofs.merge.merge_values` merges changes to different keys;
  for a key both sides changed, the server's value stays under the key and the
  local value is kept next to it under ``"<key> (conflict <origin> <YYYY-mm-dd HH-MM>)"``.
  ``_file_paths`` lists edited on both sides merge as path sets instead.
* Files: the local bytes are kept under
  :func:`oaiofs.conflicts.conflict_path` (``name (conflict <origin> <time>).ext``).
"""
from __future__ import annotations

import datetime as _dt
from typing import Any

from ..conflicts import TIME_FORMAT, conflict_path
from ..merge import merge_values

__all__ = ["conflict_path", "conflict_key", "merge_path_lists", "merge_with_conflict_copies"]


def conflict_key(key: str, origin: str, when: _dt.datetime) -> str:
    """``"<key> (conflict <origin> <YYYY-mm-dd HH-MM>)"``: where a clashing local value is kept."""
    return f"{key} (conflict {origin} {when.astimezone().strftime(TIME_FORMAT)})"


def merge_path_lists(base: list[str], local: list[str], server: list[str]) -> list[str]:
    """Three-way merge of path lists: server order, plus local additions, minus local removals."""
    added = [p for p in local if p not in base]
    removed = {p for p in base if p not in local}
    merged = [p for p in server if p not in removed]
    merged += [p for p in added if p not in merged]
    return merged


def merge_with_conflict_copies(base: dict[str, Any], local: dict[str, Any], server: dict[str, Any],
                               origin: str, when: _dt.datetime | None = None
                               ) -> tuple[dict[str, Any], list[str]]:
    """Three-way merge that never loses a local value; returns ``(merged, clashing_keys)``."""
    when = when or _dt.datetime.now(_dt.timezone.utc)
    result = merge_values(base, local, server)
    merged = dict(result.values)
    clashes = []
    for key in result.clashes:
        mine = local.get(key)
        if key == "_file_paths" and isinstance(mine, list) and isinstance(server.get(key), list):
            old = base.get(key)
            merged[key] = merge_path_lists(old if isinstance(old, list) else [], mine, server[key])
            continue
        clashes.append(key)
        if key in local:
            merged[conflict_key(key, origin, when)] = mine
    return merged, clashes
