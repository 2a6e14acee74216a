"""Three-way merge of an object's ``values`` dict (issue 5: "changes to different keys merge").

The merge works on top-level keys. For every key the base (what the user started
editing), the local and the server value are compared:

* local == server            -> that value (both sides agree, including both deleted)
* local == base              -> the server's value (only the server changed it)
* server == base             -> the local value (only this device changed it)
* otherwise                  -> a real clash: the server's value is kept and the key is
                                reported, so the caller saves the local values as a
                                conflict copy.

A missing key is a value of its own (``_MISSING``), so a deletion on one side merges
like any other change.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_MISSING = object()


@dataclass(frozen=True, slots=True)
class MergeResult:
    """The merged values and the keys that were changed differently on both sides."""

    values: dict[str, Any]
    clashes: list[str] = field(default_factory=list)


def merge_values(base: dict[str, Any] | None, local: dict[str, Any],
                 server: dict[str, Any]) -> MergeResult:
    """Merge ``local`` and ``server`` changes made since ``base`` (``None`` = unknown base)."""
    if base is None:
        base = {}
    merged: dict[str, Any] = {}
    clashes: list[str] = []
    for key in _ordered_keys(server, local, base):
        b, mine, theirs = (d.get(key, _MISSING) for d in (base, local, server))
        if mine == theirs:
            chosen = mine
        elif mine == b:
            chosen = theirs
        elif theirs == b:
            chosen = mine
        else:
            chosen = theirs
            clashes.append(key)
        if chosen is not _MISSING:
            merged[key] = chosen
    return MergeResult(merged, clashes)


def _ordered_keys(*dicts: dict[str, Any]) -> list[str]:
    """Union of the keys, in first-seen order (server order first, so listings stay stable)."""
    seen: dict[str, None] = {}
    for d in dicts:
        for key in d:
            seen.setdefault(key, None)
    return list(seen)
