"""CompactDoc answers (``?compact=true``): what a change did to an object, at a cost that does not
grow with the object (issue 16; docs/api.md, "Cost of one operation").

``changed`` lists the entries the change created or changed and, beside them, every folder
above a changed or removed path (one indexed query): that includes each folder whose mtime
the change moved (a name added or removed) and each folder made on the way, so a client
that holds the document of ``previous_version`` rebuilds exactly the server's ObjectDoc of
``version`` (vfs/compact.py ``expand``). ``removed`` lists the paths that are gone.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from .. import protocol
from . import db as dbmod
from .entry_index import index_of
from .models import FileEntry, OaiObject
from .objects import file_doc


def with_folders(obj: OaiObject, changed: Iterable[FileEntry], removed: Sequence[str]) -> list[FileEntry]:
    """``changed`` plus every existing folder above a changed or removed path (sorted by path)."""
    listed = {e.path: e for e in changed}
    gone = set(removed)
    folders = {p for path in [*listed, *gone] for p in protocol.parent_dirs(path)} - listed.keys() - gone
    if folders:
        index = index_of(obj)
        index.prefetch(sorted(folders))
        for path in folders:
            entry = index.get(path)
            if entry is not None:
                listed[path] = entry
    return [listed[p] for p in sorted(listed)]


def compact_doc(obj: OaiObject, right: str, changed: Iterable[FileEntry], removed: Sequence[str] = (), *,
                previous_version: int | None = None) -> dict[str, Any]:
    """The CompactDoc of a change of ``obj`` (``previous_version``: the version before it; default
    one less than now, i.e. a change that bumped the version once)."""
    return {"oaio_id": obj.oaio_id, "version": obj.version,
            "previous_version": obj.version - 1 if previous_version is None else previous_version,
            "stamp": obj.stamp, "updated": dbmod.iso(obj.updated), "access_right": right,
            "changed": [file_doc(e) for e in with_folders(obj, changed, removed)], "removed": sorted(removed)}


__all__ = ["compact_doc", "with_folders"]
