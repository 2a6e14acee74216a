"""The journal's metadata ops ask the server for compact answers (issue 16).

``mkdir``, ``set_meta``, ``symlink``, ``delete_path`` and ``move`` used to answer the whole
ObjectDoc: the server serialised every entry of the object and the drive parsed it, after each
op (O(files) per op: a ``git clone`` makes one of them per folder). :class:`CompactAnswers`
wraps the :class:`~oaiofs.vfs.seams.ServerApi` the journal calls: those five calls ask for
``?compact=true`` (a CompactDoc: the changed entries and the removed paths, docs/api.md) and
hand the applier the whole document anyway, built by :func:`expand` from the namespace's
document of the object when that is exactly the version before the change. Otherwise (another
writer changed the object in between, no document yet, an older server whose answer does not
list the folders the change touched) the document is fetched as before. A batch commit asks for
a compact answer too (:meth:`CompactAnswers.commit_batch_doc`, used by vfs/batching.py), and
so does a tus upload, whose own answer is only a version: :meth:`CompactAnswers.doc_after_upload`
asks for the file's info with its commit's CompactDoc (and :meth:`set_file_meta_after` builds the
document of a mode/mtime set right after it, vfs/apply.py). Every other call goes straight through.

A CompactDoc lists every folder above a changed or removed path (each folder whose mtime the
change moved among them) and the version it was built on (``previous_version``), so the built
document equals the server's ``GET`` of that version, field for field.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

from .. import protocol
from ..errors import OaioError
from .seams import ServerApi

log = logging.getLogger(__name__)

MARK = "compact"                 # a document built here (not as the server sent it)

DocSource = Callable[[str], "dict[str, Any] | None"]


def expand(old: Mapping[str, Any] | None, answer: Mapping[str, Any], touch: bool) -> dict[str, Any] | None:
    """The ObjectDoc after the change ``answer`` (a CompactDoc) describes, from ``old`` (the
    document of the version right before it: ``previous_version``, or one less than ``version``
    from servers that do not send it; or already the document of ``version``, fetched by the
    change feed first); None when ``old`` is another version, or a folder the
    change may have touched is not listed (an older server's answer: then the caller fetches).
    ``touch``: the change added or removed names (so the folders holding them changed too)."""
    if old is None or "changed" not in answer or "removed" not in answer:
        return None
    version = int(answer.get("version", -1))
    previous = int(answer.get("previous_version", version - 1))
    if answer.get("access_right") != old.get("access_right") or answer.get("oaio_id") != old.get("oaio_id"):
        return None
    if int(old.get("version", 0)) == version and previous < version and not old.get(MARK):
        return dict(old)                  # the feed fetched the server's document of this version first
    if previous >= version or int(old.get("version", 0)) != previous:
        return None
    files = {f["path"]: f for f in old.get("files", ())}
    gone = {str(p) for p in answer["removed"]}
    changed = [dict(f) for f in answer["changed"]]
    listed = {f["path"] for f in changed}
    for path in gone:
        files.pop(path, None)
    for f in changed:
        files[f["path"]] = f
    for path in (*listed, *gone):
        parent = path.rpartition("/")[0]
        if parent and parent not in listed and parent not in gone and (touch or parent not in files):
            return None                   # a folder touched or made on the way, not in the answer
    stamp = str(answer.get("stamp") or old.get("stamp") or "")
    doc = dict(old)
    doc.pop(MARK, None)
    doc.update(version=version, stamp=stamp, files=sorted(files.values(), key=_path))
    if answer.get("updated"):
        doc["updated"] = answer["updated"]
    elif protocol.is_stamp(stamp):
        doc["updated"] = protocol.stamp_to_datetime(stamp).isoformat()
    return doc


def _path(entry: Mapping[str, Any]) -> str:
    return str(entry["path"])


class CompactAnswers:
    """A ServerApi whose five metadata calls ask for compact answers (see the module doc)."""

    def __init__(self, api: ServerApi, doc_of: DocSource) -> None:
        self.api = api
        self.base_url = api.base_url
        self._doc_of = doc_of
        self.expanded = 0             # answers turned into documents without fetching (for tests, status)
        self.fetched = 0

    def _whole(self, oaio_id: str, answer: dict[str, Any], touch: bool,
               old: dict[str, Any] | None = None) -> dict[str, Any]:
        old = self._doc_of(oaio_id) if old is None else old
        doc = expand(old, answer, touch)
        if doc is not None:
            self.expanded += 1
            return doc
        log.debug("%s: the compact answer of version %s does not complete the drive's version %s; fetching",
                  oaio_id, answer.get("version"), None if old is None else old.get("version"))
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

    def doc_after_upload(self, oaio_id: str, path: str, version: int) -> dict[str, Any] | None:
        """The object's document after an upload committed ``path`` as ``version`` (a tus upload
        answers only the version), built from the file's compact info; None: fetch it (another
        writer in between, no document here, the file changed again, an older server)."""
        info_of = getattr(self.api, "file_info", None)
        if info_of is None:
            return None
        try:
            info = info_of(oaio_id, path, compact=True)
        except OaioError as err:
            log.debug("%s/%s: no compact answer after the upload (%s); fetching", oaio_id, path, err)
            return None
        answer = info.get("object")
        if answer is None or info.get("version") != version or answer.get("version") != version:
            return None
        doc = expand(self._doc_of(oaio_id), answer, touch=True)
        if doc is not None:
            self.expanded += 1
        return doc

    def set_file_meta_after(self, old: dict[str, Any], oaio_id: str, path: str, *, mode: int | None = None,
                            mtime_ns: int | None = None) -> dict[str, Any]:
        """:meth:`set_file_meta` whose document is built from ``old`` (the object's document right
        before it, not yet the namespace's: an upload's, see :meth:`doc_after_upload`)."""
        answer = self.api.set_file_meta(oaio_id, path, mode=mode, mtime_ns=mtime_ns, compact=True)
        return self._whole(oaio_id, answer, touch=False, old=old)

    def commit_batch_doc(self, oaio_id: str, files: Sequence[protocol.BatchFile]
                         ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """A batch commit asking for a compact answer: the per-file results and the object's
        document after the batch built from it (None: fetch it; no file committed, another
        writer in between, or a server without compact batch answers)."""
        commit = getattr(self.api, "commit_batch_answer", None)
        if commit is None:
            return list(self.api.commit_batch(oaio_id, files)), None   # type: ignore[attr-defined]
        answer: dict[str, Any] = commit(oaio_id, files, compact=True)
        results: list[dict[str, Any]] = answer["results"]
        if not any(r.get("status") == protocol.BATCH_OK for r in results):
            return results, None
        doc = expand(self._doc_of(oaio_id), dict(answer, version=answer.get("object_version")), touch=True)
        if doc is not None:
            self.expanded += 1
        return results, doc

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
