"""Batch commit: many small files of one object in one request and one transaction (``POST PATH_BATCH``,
routed by :mod:`oaiofs.server.routes_batch`).

The body is a tar stream (see ``BATCH_*`` in :mod:`oaiofs.protocol`): a JSON manifest,
then one member per file. It is streamed into a spooled temporary file (at most
``BATCH_MAX_BYTES``; more answers 413), parsed and hashed before the database is
touched, so a cut connection or a malformed body applies nothing and leaves nothing
behind. A hostile or repeated path, or any malformed field, refuses the whole batch
(422). Then, in ONE transaction under the blob collector's commit lock, the entries of
every path and parent are looked up at once (a shared ``EntryIndex``), each file is
checked like a single ``PUT`` against the batch so far (a stale ``base_version`` or a
folder in the way refuses that file only: ``"conflict"``; a sha256 mismatch: ``"error"``)
and applied in memory by :func:`oaiofs.server.objects.commit_file` (no flush); then the
blobs are stored side by side (:mod:`oaiofs.server.blob_batch`, each durable), and only
then are the rows flushed and the transaction committed. The change feed gets one merged
``updated`` event. Blobs stored by a transaction that then failed are unreferenced and
fresh, so ``blob_gc`` removes them after its grace period.
"""
from __future__ import annotations

import hashlib
import logging
import tarfile
from dataclasses import dataclass
from typing import IO, Any

from .. import protocol
from ..errors import ChecksumMismatch, Conflict, InvalidValue, MalformedJson, OaioError, TooLarge
from . import access, blob_batch, blob_gc, changes, objects
from .blobs import blob_key
from .compact_doc import compact_doc
from .entry_index import EntryIndex, finish, index_of
from .models import FileEntry, User
from .state import AppState, transaction

log = logging.getLogger(__name__)


SPOOL_IN_MEMORY = 1 << 20           # body bytes kept in memory before the spool moves to a temp file
_HEX = frozenset("0123456789abcdef")
_FIELDS = frozenset({"path", "sha256", "size", "base_version", "mtime_ns", "mode"})


@dataclass
class BatchItem:
    """One parsed file of a batch (``error`` set: refused before the transaction)."""

    path: str
    sha256: str
    data: bytes
    base_version: int | None = None
    mtime_ns: int | None = None
    mode: int | None = None
    error: OaioError | None = None


# --- parsing (no database, no blob store) ---
def _int_field(entry: dict[str, Any], key: str, index: int) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidValue(f"batch file {index}: {key} must be a non-negative integer", {"index": index})
    return value


def _manifest_entry(entry: Any, index: int) -> tuple[str, str, int, int | None, int | None, int | None]:
    if not isinstance(entry, dict) or not set(entry) <= _FIELDS:
        raise InvalidValue(f"batch file {index}: an object with the fields {sorted(_FIELDS)} is expected",
                           {"index": index})
    path = protocol.normalize_file_path(entry.get("path"))
    sha256 = entry.get("sha256")
    if not isinstance(sha256, str) or len(sha256) != 64 or not set(sha256) <= _HEX:
        raise InvalidValue(f"batch file {index}: sha256 must be 64 lower-case hex digits", {"path": path[:200]})
    size = _int_field(entry, "size", index)
    if size is None:
        raise InvalidValue(f"batch file {index}: size is missing", {"path": path[:200]})
    mtime_ns = entry.get("mtime_ns")
    mode = entry.get("mode")
    return (path, sha256, size, _int_field(entry, "base_version", index),
            protocol.validate_mtime_ns(mtime_ns) if mtime_ns is not None else None,
            protocol.validate_mode(mode) if mode is not None else None)


def parse_batch(body: IO[bytes]) -> list[BatchItem]:
    """Read a batch body (see :mod:`oaiofs.protocol`); ``InvalidValue`` refuses it whole."""
    try:
        tar = tarfile.open(fileobj=body, mode="r:")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidValue("the batch body is not a tar stream", {"reason": str(exc)[:200]}) from None
    try:
        return _parse_members(tar)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidValue("the batch body is a broken tar stream", {"reason": str(exc)[:200]}) from None
    finally:
        tar.close()


def _parse_members(tar: tarfile.TarFile) -> list[BatchItem]:
    member = tar.next()
    if member is None or member.name != protocol.BATCH_MANIFEST_NAME or not member.isfile():
        raise InvalidValue(f"the batch must start with a {protocol.BATCH_MANIFEST_NAME!r} member")
    raw = tar.extractfile(member).read()          # type: ignore[union-attr]
    try:      # the edge's JSON rules: UTF-8, finite numbers, no lone surrogates, bounded nesting
        manifest = protocol.load_json_body(raw, "the batch manifest")
    except MalformedJson:
        raise InvalidValue("the batch manifest is not UTF-8 JSON") from None
    entries = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(entries, list):
        raise InvalidValue('the batch manifest must be {"files": [...]}')
    if len(entries) > protocol.BATCH_MAX_FILES:
        raise TooLarge(f"a batch holds at most {protocol.BATCH_MAX_FILES} files",
                       {"limit": protocol.BATCH_MAX_FILES, "files": len(entries)})
    parsed = [_manifest_entry(entry, index) for index, entry in enumerate(entries)]
    seen: set[str] = set()
    for path, *_rest in parsed:
        if path in seen:
            raise InvalidValue("a path appears twice in one batch", {"path": path[:200]})
        seen.add(path)
    items = []
    for index, (path, sha256, size, base_version, mtime_ns, mode) in enumerate(parsed):
        member = tar.next()
        if member is None or member.name != str(index) or not member.isfile() or member.size != size:
            raise InvalidValue(f"batch member {index} is missing, misnamed or not {size} bytes",
                               {"index": index, "path": path[:200]})
        data = tar.extractfile(member).read()     # type: ignore[union-attr]
        if len(data) != size:
            raise InvalidValue(f"batch member {index} is cut short", {"index": index, "path": path[:200]})
        item = BatchItem(path, sha256, data, base_version, mtime_ns, mode)
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            item.error = ChecksumMismatch("sha256 of the file does not match the announced one; it was not committed",
                                          {"path": path, "expected": sha256, "actual": actual}, http_status=422)
        items.append(item)
    if tar.next() is not None:
        raise InvalidValue("the batch has more members than its manifest names")
    return items


# --- committing ---
_PREFETCH_CHUNK = 500        # paths per lookup query (bounded IN lists on every backend)


def _prefetch(entries: EntryIndex, items: list[BatchItem]) -> None:
    """Load the entry at every item's path and at each of its parents, in a few queries."""
    paths = list(dict.fromkeys(p for item in items if item.error is None
                               for p in (item.path, *protocol.parent_dirs(item.path))))
    for start in range(0, len(paths), _PREFETCH_CHUNK):
        entries.prefetch(paths[start:start + _PREFETCH_CHUNK])


def _precheck(entries: EntryIndex, obj: Any, item: BatchItem) -> None:
    """The refusals of a single PUT, before anything of this file is written (against the batch so far)."""
    entry = entries.get(item.path)
    if entry is not None and entry.kind == objects.DIR:
        raise Conflict(f"{item.path!r} is a folder", {"oaio_id": obj.oaio_id, "path": item.path})
    objects.check_file_base(obj, item.path, entry, item.base_version)
    for parent in protocol.parent_dirs(item.path):
        found = entries.get(parent)
        if found is not None and found.kind != objects.DIR:
            raise Conflict(f"{parent!r} is a file, not a folder", {"oaio_id": obj.oaio_id, "path": parent})


def _result(item: BatchItem, err: OaioError) -> dict[str, Any]:
    status = protocol.BATCH_CONFLICT if err.http_status == 409 else protocol.BATCH_ERROR
    return {"path": item.path, "status": status, "error": err.to_json()}


def commit_items(state: AppState, user_id: int, oaio_id: str, items: list[BatchItem],
                 compact: bool = False) -> dict[str, Any]:
    """Commit every acceptable item in one transaction; per-file results in order (``compact``:
    the answer is also a CompactDoc of the whole batch, see :mod:`oaiofs.server.compact_doc`)."""
    results: list[dict[str, Any]] = []
    entries: list[FileEntry] = []
    with transaction(state) as db:
        blob_gc.lock_for_commit(db)              # blobs stored below are not collected before we refer to them
        user = db.get_one(User, user_id)
        obj, right = access.load_object(db, user, oaio_id, "update", for_update=True)
        previous_version = obj.version
        state.blobs.check_space(sum(len(item.data) for item in items if item.error is None))
        index = index_of(obj)                    # shared by every file: looked up once, no flush per file
        _prefetch(index, items)
        to_store: dict[str, bytes] = {}
        with changes.coalesced(db):
            for item in items:
                if item.error is not None:
                    results.append(_result(item, item.error))
                    continue
                try:
                    _precheck(index, obj, item)
                except OaioError as err:
                    results.append(_result(item, err))
                    continue
                key = blob_key(item.sha256)
                to_store.setdefault(key, item.data)
                entry = objects.commit_file(db, user, obj, item.path, blob_key=key, size=len(item.data),
                                            sha256=item.sha256, mtime=None, base_version=item.base_version,
                                            mtime_ns=item.mtime_ns, mode=item.mode, entries=index, flush=False)
                results.append({"path": item.path, "status": protocol.BATCH_OK, "version": entry.version})
                entries.append(entry)
            blob_batch.store_many(state.blobs, to_store)   # every blob durable before the rows naming them
            finish(db, obj)
        for result in results:
            result["object_version"] = obj.version
        answer = {"object_version": obj.version, "stamp": obj.stamp, "results": results}
        if compact:
            answer.update(compact_doc(obj, right, entries, previous_version=previous_version))
    committed = sum(r["status"] == protocol.BATCH_OK for r in results)
    log.info("batch into %r: %d of %d files committed", oaio_id, committed, len(results))
    return answer


def check_access(state: AppState, user_id: int, oaio_id: str) -> None:
    """401/403/404/410 before the body is read."""
    with transaction(state) as db:
        access.load_object(db, db.get_one(User, user_id), oaio_id, "update")
