"""The journal's metadata ops ask the server for compact answers (issue 16).

``mkdir``, ``set_meta``, ``symlink``, ``delete_path`` and ``move`` used to answer the whole
ObjectDoc: the server serialised every entry of the object and the drive parsed it, after each
op (O(files) per op: a ``git clone`` makes one of them per folder). :class:`CompactAnswers`
wraps the :class:`~oaiofs.vfs.seams.ServerApi` the journal calls: those five calls ask for
``?compact=true`` (a CompactDoc: the changed entries and the removed paths, docs/api.md) and
hand the applier the whole document anyway, built by :func:`expand` from the namespace's
document of the object when that is exactly one version older. Otherwise (another writer
changed the object in between, a folder the server made on the way, no document yet) the
document is fetched as before. Every other call goes straight through.

The built document differs from the server's in one way only: the folders the change added a
name to or removed one from get the change's stamp as their mtime (the server took its clock
a moment earlier, and a CompactDoc does not list them). It is marked ``"compact": true``, so
the change feed's next fetch of the object replaces it (``Namespace.put_doc``).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from .. import protocol
from .seams import ServerApi

log = logging.getLogger(__name__)

MARK = "compact"                 # a document built here (not as the server sent it)

DocSource = Callable[[str], "dict[str, Any] | None"]


def expand(old: Mapping[str, Any] | None, answer: Mapping[str, Any], touch: bool) -> dict[str, Any] | None:
    """The ObjectDoc after the change ``answer`` (a CompactDoc) describes, from ``old`` (the
    document before it); None when ``old`` is not the version right before, or a changed entry's
    folder is not in ``old`` (made on the way). ``touch``: the change added or removed names."""
    if old is None or "changed" not in answer or "removed" not in answer:
        return None
    if int(answer.get("version", -1)) != int(old.get("version", 0)) + 1:
        return None
    if answer.get("access_right") != old.get("access_right") or answer.get("oaio_id") != old.get("oaio_id"):
        return None
    files = {f["path"]: f for f in old.get("files", ())}
    removed = [str(p) for p in answer["removed"]]
    changed = [dict(f) for f in answer["changed"]]
    for path in removed:
        files.pop(path, None)
    for f in changed:
        parent = f["path"].rpartition("/")[0]
        if parent and parent not in files and all(c["path"] != parent for c in changed):
            return None                   # a folder made on the way: not listed in the answer
        files[f["path"]] = f
    stamp = str(answer.get("stamp") or old.get("stamp") or "")
    when = protocol.stamp_to_datetime(stamp) if protocol.is_stamp(stamp) else None
    if touch and when is not None:
        now_ns = int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000
        moved_in = {f["path"] for f in changed}
        for path in {p.rpartition("/")[0] for p in [*removed, *moved_in]}:
            folder = files.get(path) if path else None
            if folder is not None and folder.get("kind") == "dir" and path not in moved_in:
                files[path] = dict(folder, mtime=now_ns / 1e9, mtime_ns=now_ns)
    doc = dict(old)
    doc.update(version=int(answer["version"]), stamp=stamp, files=list(files.values()))
    if when is not None:
        doc["updated"] = when.isoformat()
    doc[MARK] = True
    return doc


class CompactAnswers:
    """A ServerApi whose five metadata calls ask for compact answers (see the module doc)."""

    def __init__(self, api: ServerApi, doc_of: DocSource) -> None:
        self.api = api
        self.base_url = api.base_url
        self._doc_of = doc_of
        self.expanded = 0             # answers turned into documents without fetching (for tests, status)
        self.fetched = 0

    def _whole(self, oaio_id: str, answer: dict[str, Any], touch: bool) -> dict[str, Any]:
        doc = expand(self._doc_of(oaio_id), answer, touch)
        if doc is not None:
            self.expanded += 1
            return doc
        self.fetched += 1
        return self.api.get_object(oaio_id)

    # --- the compact calls ---
    def set_file_meta(self, oaio_id: str, path: str, *, mode: int | None = None, mtime_ns: int | None = None,
                      base_version: int | None = None, compact: bool = False) -> dict[str, Any]:
        answer = self.api.set_file_meta(oaio_id, path, mode=mode, mtime_ns=mtime_ns,
                                        base_version=base_version, compact=True)
        return answer if compact else self._whole(oaio_id, answer, touch=False)

    def make_link(self, oaio_id: str, path: str, target: str, *, mtime_ns: int | None = None,
                  base_version: int | None = None, compact: bool = False) -> dict[str, Any]:
        answer = self.api.make_link(oaio_id, path, target, mtime_ns=mtime_ns,
                                    base_version=base_version, compact=True)
        return answer if compact else self._whole(oaio_id, answer, touch=True)

    def delete_file(self, oaio_id: str, path: str, base_version: int | None = None, *,
                    compact: bool = False) -> dict[str, Any]:
        answer = self.api.delete_file(oaio_id, path, base_version, compact=True)
        return answer if compact else self._whole(oaio_id, answer, touch=True)

    def make_dir(self, oaio_id: str, path: str, *, compact: bool = False) -> dict[str, Any]:
        answer = self.api.make_dir(oaio_id, path, compact=True)
        return answer if compact else self._whole(oaio_id, answer, touch=True)

    def move(self, oaio_id: str, src: str, dst: str, *, base_version: int | None = None,
             overwrite: bool = False, compact: bool = False) -> dict[str, Any]:
        answer = self.api.move(oaio_id, src, dst, base_version=base_version,
                               overwrite=overwrite, compact=True)
        return answer if compact else self._whole(oaio_id, answer, touch=True)

    # --- straight through ---
    def close(self) -> None:
        self.api.close()

    def list_objects(self) -> tuple[list[dict[str, Any]], int]:
        return self.api.list_objects()

    def get_object(self, oaio_id: str) -> dict[str, Any]:
        return self.api.get_object(oaio_id)

    def create_object(self, values: dict[str, Any], oaio_id: str | None = None, *, app_id: str | None = None,
                      device_id: str | None = None, stamp: str | None = None) -> dict[str, Any]:
        return self.api.create_object(values, oaio_id, app_id=app_id, device_id=device_id, stamp=stamp)

    def update_values(self, oaio_id: str, values: dict[str, Any], *, mode: str = "merge",
                      base_version: int | None = None) -> dict[str, Any]:
        return self.api.update_values(oaio_id, values, mode=mode, base_version=base_version)

    def delete_object(self, oaio_id: str, base_version: int | None = None) -> dict[str, Any]:
        return self.api.delete_object(oaio_id, base_version)

    def put_file(self, oaio_id: str, path: str, data: bytes, *, base_version: int | None = None,
                 mtime: float | None = None, mtime_ns: int | None = None,
                 mode: int | None = None) -> dict[str, Any]:
        return self.api.put_file(oaio_id, path, data, base_version=base_version, mtime=mtime,
                                 mtime_ns=mtime_ns, mode=mode)

    def subscriptions(self, oaio_id: str) -> list[dict[str, str]]:
        return self.api.subscriptions(oaio_id)

    def set_subscription(self, oaio_id: str, username: str, access_right: str) -> int:
        return self.api.set_subscription(oaio_id, username, access_right)

    def changes(self, cursor: int = 0, wait: float = 0.0, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
        return self.api.changes(cursor, wait, limit)

    def __getattr__(self, name: str) -> Any:
        """Anything else the client has (``commit_batch``, ``session``, ...): present only if it has it."""
        if name == "api":
            raise AttributeError(name)
        return getattr(self.api, name)


__all__ = ["CompactAnswers", "expand", "MARK"]
