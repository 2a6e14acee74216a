"""Apply one journal op to the server, resolving version conflicts without losing anything.

:class:`OpApplier` knows what each op kind means on the wire (``ApiClient`` calls and
``TusUploader`` uploads) and what to do when the server has moved on:

* ``put_file``: if the server already holds our bytes (same sha256) the op is done —
  this is how an upload completed before a crash is not re-applied as a conflict
  against itself; if it holds the op's ``parent_sha256`` (this history's previous bytes: our
  own upload, moved, or applied before a crash) the op goes on top of it; otherwise the
  server's file stays and our bytes are uploaded as ``name (conflict <origin> <time>).ext``
  next to it.
* ``put_values``: three-way merge with ``base_values`` (:mod:`oaiofs.merge`); a key
  changed differently on both sides keeps the server's value and the local values are
  attached as ``values (conflict <origin> <time>).json``.
* ``delete_path``/``delete_object`` on a changed target: nothing is deleted, the op fails
  (the user is told). ``move`` of a changed file is retried unconditionally (a move keeps
  the other side's bytes). Re-applying any op after a crash is harmless (idempotent checks).

The applier never touches the journal's lock or queue; it reports an :class:`Outcome`.
It persists upload progress through the ``save`` callback it is given.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import protocol
from ..hashing import file_sha256
from ..errors import (AlreadyExists, ChecksumMismatch, Gone, NotFound, OaioError, OffsetMismatch,
                      Unauthorized, Unavailable, VersionConflict)
from ..conflicts import conflict_path
from ..merge import merge_values
from .counters import COUNTERS
from .opstore import Op
from .seams import ServerApi, Uploader

log = logging.getLogger(__name__)

MAX_CONFLICT_NAMES = 20          # "name (conflict … N).ext" tried before giving up (then retried later)
MAX_MERGE_ROUNDS = 5             # values merges raced by other writers before backing off
TRANSIENT_STATUSES = frozenset({408, 429})


class Interrupted(Exception):
    """Raised inside an upload's progress callback when the journal is stopping."""


@dataclass
class Outcome:
    """What happened to one attempt at an op."""

    state: str                          # "done" | "conflict" | "failed" | "retry"
    doc: dict[str, Any] | None = None   # the server's ObjectDoc after the op, if known
    result_version: int | None = None
    conflict_path: str = ""
    error: OaioError | None = None
    base_held: bool = True              # False: the op's base version was stale (applied without it)


def is_transient(err: OaioError) -> bool:
    """True for errors that go away by themselves (server down, overloaded, upload raced)."""
    if isinstance(err, (Unavailable, OffsetMismatch, ChecksumMismatch, Unauthorized)):
        return True
    return err.http_status >= 500 or err.http_status in TRANSIENT_STATUSES


class OpApplier:
    """Turns ops into server calls; one instance is shared by the journal's workers."""

    def __init__(self, api: ServerApi, uploader: Uploader, origin: str, save: Callable[[Op], None],
                 stopping: threading.Event, upload_limit_bps: int | None = None) -> None:
        self.api = api
        self.uploader = uploader
        self.origin = origin
        self.upload_limit_bps = upload_limit_bps
        self._save = save
        self._stopping = stopping

    def apply(self, op: Op) -> Outcome:
        """Apply ``op`` once; transient trouble comes back as ``Outcome("retry")``."""
        handler = getattr(self, "_apply_" + op.kind, None)
        if handler is None:
            return Outcome("failed", error=OaioError(f"unknown op kind {op.kind!r}"))
        try:
            outcome: Outcome = handler(op)
            return outcome
        except Interrupted:
            return Outcome("retry")
        except OaioError as err:
            return Outcome("retry" if is_transient(err) else "failed", error=err)
        except FileNotFoundError as err:
            return Outcome("failed", error=OaioError(f"journal snapshot missing: {err.filename}"))
        except Exception as err:  # noqa: BLE001 - a bug must not drop the op: log and retry later
            if self._stopping.is_set():
                return Outcome("retry")      # shutting down under the op's feet (store or session closed)
            log.exception("%s %s: unexpected error while applying op %d", op.oaio_id, op.path, op.id)
            return Outcome("retry", error=OaioError(f"unexpected error: {err!r}"))

    # --- object-level ops --------------------------------------------------------------
    def _apply_create_object(self, op: Op) -> Outcome:
        try:
            doc = self.api.create_object(op.values or {}, op.oaio_id)
        except AlreadyExists:
            doc = self.api.get_object(op.oaio_id)   # created before a crash lost the answer
        return Outcome("done", doc, doc.get("version"))

    def _apply_put_values(self, op: Op) -> Outcome:
        values = dict(op.values or {})
        base = op.base_version
        copy_path = ""
        for _round in range(MAX_MERGE_ROUNDS):
            try:
                doc = self.api.update_values(op.oaio_id, values, mode="replace", base_version=base)
                return Outcome("conflict" if copy_path else "done", doc, doc.get("version"), copy_path)
            except VersionConflict:
                server = self.api.get_object(op.oaio_id)
            if server["values"] == values:
                return Outcome("conflict" if copy_path else "done", server, server.get("version"), copy_path)
            merged = merge_values(op.base_values, op.values or {}, server["values"])
            if merged.clashes and not copy_path:
                log.warning("%s: values changed on the server and here (keys %s); keeping the local "
                            "values as a conflict copy", op.oaio_id, ", ".join(merged.clashes))
                copy_path = self._keep_values_copy(op)
            values, base = merged.values, server["version"]
        raise VersionConflict(f"{op.oaio_id}: values keep changing on the server; will retry")

    def _keep_values_copy(self, op: Op) -> str:
        data = json.dumps(op.values or {}, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")
        digest = hashlib.sha256(data).hexdigest()

        def upload(path: str) -> Any:
            return self.api.put_file(op.oaio_id, path, data, base_version=0)
        return self._first_free_conflict_name(op, protocol.VALUES_FILE, digest, upload)[0]

    def _apply_delete_object(self, op: Op) -> Outcome:
        try:
            doc = self.api.delete_object(op.oaio_id, op.base_version)
        except Gone:
            return Outcome("done")        # already deleted (maybe by us before a crash)
        except VersionConflict as err:
            log.warning("%s: changed on the server since it was deleted here; NOT deleting it", op.oaio_id)
            return Outcome("failed", error=err)
        return Outcome("done", doc, doc.get("version"))

    # --- file-level ops ----------------------------------------------------------------
    def _apply_mkdir(self, op: Op) -> Outcome:
        try:
            doc = self.api.make_dir(op.oaio_id, op.path)
        except AlreadyExists:
            doc = self.api.get_object(op.oaio_id)
        return Outcome("done", doc, doc.get("version"))

    def _apply_delete_path(self, op: Op) -> Outcome:
        try:
            doc = self.api.delete_file(op.oaio_id, op.path, op.base_version)
        except NotFound:
            doc = self.api.get_object(op.oaio_id)    # raises if the object itself is not visible
            if _find_file(doc, op.path) is not None:
                raise
            return Outcome("done", doc, doc.get("version"))   # already gone
        except VersionConflict as err:
            log.warning("%s/%s: changed on the server since it was deleted here; NOT deleting it",
                        op.oaio_id, op.path)
            return Outcome("failed", error=err)
        return Outcome("done", doc, doc.get("version"))

    def _apply_move(self, op: Op) -> Outcome:
        held = True
        try:
            doc = self.api.move(op.oaio_id, op.path, op.dst, base_version=op.base_version, overwrite=True)
        except VersionConflict:
            log.info("%s/%s: changed on the server; moving the server's version to %s",
                     op.oaio_id, op.path, op.dst)
            doc = self.api.move(op.oaio_id, op.path, op.dst, overwrite=True)
            op.base_version, held = None, False     # the drive must not take the moved file as its own
        except NotFound:
            doc = self.api.get_object(op.oaio_id)
            if _find_file(doc, op.path) is not None or _find_file(doc, op.dst) is None:
                raise
        return Outcome("done", doc, doc.get("version"), base_held=held)   # (re-applied after a crash: already moved)

    def _apply_put_file(self, op: Op) -> Outcome:
        assert op.data_file, "put_file op without a snapshot"
        if not op.sha256:
            op.sha256 = file_sha256(Path(op.data_file))
            self._save(op)
        if not op.conflict_path:
            try:
                result = self._upload(op, op.path, op.base_version)
                committed = int(result["version"])
                return Outcome("done", self._meta_fixup(op, self._doc_after_upload(op, committed)), committed)
            except ChecksumMismatch:
                self._check_snapshot_unchanged(op)
                raise
            except VersionConflict:
                current = self._server_file(op.oaio_id, op.path)
                if current is not None and current.get("sha256") == op.sha256:
                    log.info("%s/%s: the server already has these bytes", op.oaio_id, op.path)
                    # with the object's document: the drive stops replaying the op, so its view
                    # must come from the server (without it a new file vanished until the feed caught up)
                    return Outcome("done", self._doc_or_none(op.oaio_id), int(current["version"]))
                if current is not None and _is_own_parent(op, current):
                    done = self._put_on_own_parent(op, current)
                    if done is not None:
                        return done
                log.warning("%s/%s: changed on the server since this edit was based on it; keeping "
                            "both (local bytes go to a conflict copy)", op.oaio_id, op.path)
        path, version = self._first_free_conflict_name(
            op, op.path, op.sha256, lambda target: self._upload(op, target, 0, conflict=True))
        return Outcome("conflict", self._doc_or_none(op.oaio_id), version, path)

    def _put_on_own_parent(self, op: Op, current: dict[str, Any]) -> Outcome | None:
        """The server's file holds the bytes this history had before ``op`` (our own earlier
        snapshot, maybe moved or committed just before a crash): nobody else changed it, so ``op``
        applies on top of it — one writer never conflicts with itself (docs/drive.md,
        "Consistency"). None if it changed again meanwhile (then the usual conflict handling)."""
        log.info("%s/%s: the server's version %s holds this history's previous bytes; applying on top",
                 op.oaio_id, op.path, current.get("version"))
        if op.upload_url:
            op.upload_url, op.offset = None, 0      # the stale upload was opened with the old base
            self._save(op)
        try:
            result = self._upload(op, op.path, int(current["version"]))
        except VersionConflict:
            again = self._server_file(op.oaio_id, op.path)
            if again is not None and again.get("sha256") == op.sha256:
                return Outcome("done", None, int(again["version"]))
            return None
        op.base_version = int(current["version"])
        version = int(result["version"])
        return Outcome("done", self._meta_fixup(op, self._doc_after_upload(op, version)), version)

    def _apply_set_meta(self, op: Op) -> Outcome:
        """chmod/utimens: metadata only, last writer wins; a file deleted meanwhile needs nothing."""
        try:
            doc = self.api.set_file_meta(op.oaio_id, op.path, mode=op.mode, mtime_ns=op.mtime_ns)
        except NotFound:
            doc = self.api.get_object(op.oaio_id)    # raises if the object itself is not visible
            if _find_file(doc, op.path) is not None:
                raise
            log.info("%s/%s: gone before its mode/mtime reached the server", op.oaio_id, op.path)
        return Outcome("done", doc, doc.get("version"))

    def _apply_symlink(self, op: Op) -> Outcome:
        doc = self.api.make_link(op.oaio_id, op.path, op.target or "", mtime_ns=op.mtime_ns)
        return Outcome("done", doc, doc.get("version"))

    # --- helpers -----------------------------------------------------------------------
    def _meta_fixup(self, op: Op, doc: dict[str, Any] | None) -> dict[str, Any] | None:
        """An upload streamed while the file was written was created before its mode/mtime were
        known: set them now (metadata only) if the server's file does not show them."""
        current = _find_file(doc, op.path) if doc is not None else None
        if current is None or current.get("sha256") != op.sha256:
            return doc
        mode = op.mode if op.mode is not None and current.get("mode") != op.mode else None
        mtime_ns = op.mtime_ns if op.mtime_ns and current.get("mtime_ns") != op.mtime_ns else None
        if mode is None and mtime_ns is None:
            return doc
        after = getattr(self.api, "set_file_meta_after", None)     # vfs/compact.py: no whole-object fetch
        try:
            if after is not None and doc is not None:
                return dict(after(doc, op.oaio_id, op.path, mode=mode, mtime_ns=mtime_ns))
            return self.api.set_file_meta(op.oaio_id, op.path, mode=mode, mtime_ns=mtime_ns)
        except OaioError as err:
            log.warning("%s/%s: uploaded, but its mode/mtime were not set: %s", op.oaio_id, op.path, err)
            return doc

    # --- helpers -----------------------------------------------------------------------
    def _check_snapshot_unchanged(self, op: Op) -> None:
        """After a whole-file checksum failure: if the snapshot's bytes changed (someone wrote
        into the hard link), upload what is there now, from the start."""
        actual = file_sha256(Path(op.data_file or ""))
        if actual != op.sha256:
            log.warning("%s/%s: the journal's snapshot changed after it was queued; uploading its "
                        "current bytes", op.oaio_id, op.path)
            op.sha256, op.upload_url, op.offset = actual, None, 0
            op.size = Path(op.data_file or "").stat().st_size
            self._save(op)

    def _upload(self, op: Op, target: str, base_version: int | None, conflict: bool = False) -> dict[str, Any]:
        """Upload ``op``'s snapshot to ``target``, resuming the persisted tus URL when there is one."""
        if conflict and op.conflict_path != target:
            op.conflict_path, op.upload_url, op.offset = target, None, 0
            self._save(op)

        def on_url(url: str) -> None:
            op.upload_url = url
            self._save(op)

        first: list[float] = []       # [monotonic time, offset] of the first report of this attempt
        reported = [-1]               # the offset of the last report (bytes sent since count as uploaded)

        def on_progress(offset: int, size: int = 0, *_rest: Any) -> None:
            if reported[0] >= 0 and offset > reported[0]:
                COUNTERS.upload_bytes += offset - reported[0]
            reported[0] = offset
            if not first:
                first.extend((time.monotonic(), offset))
                if offset:
                    log.info("%s/%s: the server has %d of %d bytes; sending the rest", op.oaio_id, target,
                             offset, size)
            if offset != op.offset:
                op.offset = int(offset)
                self._save(op)
            self._throttle(first, offset)
            if self._stopping.is_set():
                raise Interrupted()
        if op.upload_url:   # the uploader HEADs it: resumes at the server's offset, or starts afresh if gone
            log.info("%s/%s: resuming upload %s (last known offset %d)", op.oaio_id, target,
                     op.upload_url, op.offset)
        return self.uploader.upload_file(Path(op.data_file or ""), op.oaio_id, target, url=op.upload_url,
                                         sha256=op.sha256, base_version=base_version, mtime=op.mtime,
                                         on_url=on_url, on_progress=on_progress, mtime_ns=op.mtime_ns,
                                         mode=op.mode)

    def _throttle(self, first: list[float], offset: int) -> None:
        """Sleep so this upload stays under ``upload_limit_bps`` (wakes early when the journal stops)."""
        if not self.upload_limit_bps:
            return
        started, start_offset = first
        ahead_s = (offset - start_offset) / self.upload_limit_bps - (time.monotonic() - started)
        if ahead_s > 0:
            self._stopping.wait(ahead_s)

    def _first_free_conflict_name(self, op: Op, path: str, sha256: str | None,
                                  upload: Callable[[str], Any]) -> tuple[str, int | None]:
        """Store our bytes under the first free conflict name (or find them already there)."""
        when = dt.datetime.fromtimestamp(op.created or 0, dt.timezone.utc)
        for attempt in range(1, MAX_CONFLICT_NAMES + 1):
            candidate = conflict_path(path, self.origin, when, attempt)
            try:
                result = upload(candidate)
                return candidate, _version_of(result)
            except (VersionConflict, AlreadyExists):
                current = self._server_file(op.oaio_id, candidate)
                if current is not None and current.get("sha256") == sha256:
                    return candidate, current.get("version")
        raise VersionConflict(f"{op.oaio_id}/{path}: no free conflict-copy name; will retry")

    def _server_file(self, oaio_id: str, path: str) -> dict[str, Any] | None:
        return _find_file(self.api.get_object(oaio_id), path)

    def doc_or_none(self, oaio_id: str) -> dict[str, Any] | None:
        """The object's document after a commit (None if it cannot be fetched)."""
        return self._doc_or_none(oaio_id)

    def _doc_after_upload(self, op: Op, version: int) -> dict[str, Any] | None:
        """The object's document after ``op``'s upload committed ``version``: built from the
        server's compact answer where the api offers it (vfs/compact.py), else fetched."""
        build = getattr(self.api, "doc_after_upload", None)
        doc = build(op.oaio_id, op.path, version) if build is not None else None
        return dict(doc) if doc is not None else self._doc_or_none(op.oaio_id)

    def _doc_or_none(self, oaio_id: str) -> dict[str, Any] | None:
        """The object's document after an upload (best effort: None if it cannot be fetched)."""
        try:
            return self.api.get_object(oaio_id)
        except OaioError as err:
            log.debug("%s: cannot fetch the object after an upload: %s", oaio_id, err)
            return None


def _is_own_parent(op: Op, current: dict[str, Any]) -> bool:
    """True if the server's ``current`` file is the bytes ``op``'s history descends from."""
    return (op.parent_sha256 is not None and current.get("kind", "file") == "file"
            and current.get("sha256") == op.parent_sha256 and current.get("version") is not None)


def _find_file(doc: dict[str, Any], path: str) -> dict[str, Any] | None:
    return next((f for f in doc.get("files", []) if f.get("path") == path), None)


def _version_of(result: Any) -> int | None:
    """The version in an upload result or FileDoc."""
    if isinstance(result, dict) and result.get("version") is not None:
        return int(result["version"])
    return None
