"""The two-way sync of ``OaioClient``: push local changes with version checks, then pull.

One :meth:`Synchronizer.sync` run (the caller holds the state lock):

1. **Push** every dirty record, oldest ``client_stamp`` first: pending deletions
   (``delete_object`` with ``base_version``), new objects (``create_object``),
   changed values (``update_values`` mode ``replace`` with ``base_version``; on
   409 a three-way merge that keeps clashing local values as conflict entries),
   then attached files (``TusUploader`` with each file's ``base_version``; on 409
   the local bytes are uploaded as a conflict copy ``name (conflict …).ext``).
   A local edit the server refuses (403) is kept as a new object of this user
   (a conflict copy) and the record falls back to the server's version.
2. **Pull** what changed: the ids the change feed names after the saved cursor
   (plus the objects just pushed) are fetched one by one; the first sync, a lost
   or foreign cursor, or a flood of changes use the full listing
   (``list_objects``) instead. Objects whose version differs are refreshed
   (values; files whose content differs are fetched through one
   ``CartDownloader`` cart per object into ``staging/``, checked against their
   sha256, then moved into place).
3. **Vanish**: synced records the server no longer shows this user (deleted,
   or the user was unsubscribed: 404/410, or missing from the listing) are
   removed locally; un-pushed local edits of them are kept first as a conflict
   copy object.

A failure of one object is recorded in the :class:`SyncReport` and does not stop
the others; ``Unavailable`` (offline) and ``Unauthorized`` abort the run.

Where files live: objects registered on this device with a root folder keep
their files there (``OaiObject.root_path``); every other object's files live
in ``client_root/filez/<oaio_id>/``. ``_root_path`` values coming from the
server are never used as local paths, and every file path from the server goes
through :func:`oaiofs.client.local_paths.safe_join`.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import (AlreadyExists, Forbidden, Gone, InvalidValue, NotFound, OaioError, Unauthorized,
                      Unavailable, VersionConflict)
from ..protocol import (make_oaio_id, normalize_file_path, now_stamp, stamp_to_datetime,
                        validate_oaio_id, is_stamp)
from .. import protocol
from . import batch_push, file_meta
from .conflicts import conflict_path, merge_with_conflict_copies
from .local_paths import is_inside, list_files, local_sha256, safe_join, stat_key
from .local_state import LocalState
from .oaio_object import OaiObject
from .api import ApiClient
from .carts import CartDownloader, cart_entry
from ..hashing import file_sha256
from .uploads import TusUploader

log = logging.getLogger(__name__)

CART_WAIT_S = 60.0
MAX_MERGE_ATTEMPTS = 3
FEED_PAGE = 500              # change events per request
MAX_FEED_PAGES = 4           # more events than this: one full listing is cheaper
MAX_FEED_OBJECTS = 200       # more changed objects than this: one full listing is cheaper


@dataclass
class SyncReport:
    """What one sync run did: problems (errors), kept conflicts, transfers and removals."""

    errors: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    downloaded: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    cursor: int = 0


def path_list(values: dict[str, Any]) -> list[Any]:
    """The ``_file_paths`` list of a values dict ([] if missing or malformed)."""
    paths = values.get("_file_paths")
    return list(paths) if isinstance(paths, list) else []


def next_stamp(after: str = "") -> str:
    """``now_stamp()``, or one microsecond after ``after`` if the clock is not ahead of it."""
    stamp = now_stamp()
    if is_stamp(after) and stamp <= after:
        stamp = now_stamp(stamp_to_datetime(after) + _dt.timedelta(microseconds=1))
    return stamp


class Synchronizer:
    """Pushes and pulls the records of one :class:`LocalState` for one user and device."""

    def __init__(self, state: LocalState, api: ApiClient, uploader: TusUploader, downloader: CartDownloader, *,
                 username: str, device_id: str, app_id: str) -> None:
        self.state = state
        self.api = api
        self.uploader = uploader
        self.downloader = downloader
        self.username = username
        self.device_id = device_id
        self.app_id = app_id

    @property
    def server_id(self) -> str:
        """Which server the saved change-feed cursor belongs to."""
        return str(getattr(self.api, "base_url", ""))

    @property
    def origin(self) -> str:
        """Who made a conflict copy: ``user@device``."""
        return f"{self.username}@{self.device_id}" if self.device_id else self.username

    def files_root(self, obj: OaiObject) -> Path:
        """The folder that holds ``obj``'s attached files on this device."""
        return Path(obj.root_path) if obj.root_path else self.state.object_files_dir(obj.oaio_id)

    # --- the run ---
    def sync(self) -> SyncReport:
        """One push + pull; raises ``Unavailable``/``Unauthorized`` when the server cannot be used."""
        report = SyncReport()
        pushed = self._push_all(report)
        push_errors = len(report.errors)
        feed = self._changes_since_cursor()
        if feed is None:
            self._pull_listing(report, pushed)
        else:
            changed, report.cursor = feed
            incomplete = {i for i, o in self.state.objects.items() if o.incomplete}
            for oaio_id in sorted(changed | pushed | incomplete):
                self._guard(report, oaio_id, self._pull_by_id, oaio_id, oaio_id in pushed, report)
        if len(report.errors) == push_errors:     # a failed pull is retried: keep the old cursor
            self.state.write_state(cursor=report.cursor, server=self.server_id)
        self._push_all(report, only_new=True)     # conflict copies made while pulling
        return report

    def _changes_since_cursor(self) -> tuple[set[str], int] | None:
        """Ids named by the change feed since the saved cursor, and the new cursor.

        None when a full listing is needed: no cursor yet (or one of another server, or
        ahead of the server's feed), a feed the server cannot answer, or more changes
        than a listing costs.
        """
        saved = self.state.read_state()
        cursor = saved.get("cursor")
        if not isinstance(cursor, int) or saved.get("server") != self.server_id:
            return None
        changed: set[str] = set()
        for _page in range(MAX_FEED_PAGES):
            try:
                events, next_cursor = self.api.changes(cursor, wait=0, limit=FEED_PAGE)
            except (Unavailable, Unauthorized):
                raise
            except OaioError as exc:
                log.info("change feed unusable (%s); listing all objects", exc.message)
                return None
            if next_cursor < cursor:              # the server's feed went back: a new database
                log.info("change feed cursor went back from %d to %d; listing all objects", cursor, next_cursor)
                return None
            cursor = next_cursor
            for event in events:
                with contextlib.suppress(InvalidValue):
                    changed.add(validate_oaio_id(event.get("subject")))
            if len(events) < FEED_PAGE:
                return (changed, cursor) if len(changed) <= MAX_FEED_OBJECTS else None
        return None

    def _pull_by_id(self, oaio_id: str, force: bool, report: SyncReport) -> None:
        """Refresh one object the change feed named (or forget it if it is gone for us)."""
        obj = self.state.get(oaio_id)
        try:
            doc = self.api.get_object(oaio_id)
        except (NotFound, Gone):
            if obj is not None and obj.server_version > 0 and not obj.pending_delete:
                self.forget(obj, report)
            return
        self._refresh(doc, obj, force, report)

    def _pull_listing(self, report: SyncReport, pushed: set[str]) -> None:
        """Compare every visible object with the local records (first sync, or when the feed cannot tell)."""
        docs, report.cursor = self.api.list_objects()
        listed: dict[str, dict[str, Any]] = {}
        for doc in docs:
            try:
                listed[validate_oaio_id(doc.get("oaio_id"))] = doc
            except InvalidValue as exc:
                report.errors.append(f"refused an object with a bad id from the server: {exc.message}")
        for oaio_id, doc in listed.items():
            self._guard(report, oaio_id, self._refresh, doc, self.state.get(oaio_id), oaio_id in pushed, report)
        for oaio_id, obj in list(self.state.objects.items()):
            if oaio_id not in listed and obj.server_version > 0 and not obj.pending_delete:
                self._guard(report, oaio_id, self.forget, obj, report)

    def _refresh(self, doc: dict[str, Any], obj: OaiObject | None, force: bool, report: SyncReport) -> None:
        """Pull ``doc`` if it differs from the local record (a record with unpushed edits waits)."""
        if obj is not None and obj.dirty:
            return                            # its push failed; retried next time
        if obj is None or doc.get("version") != obj.server_version or force or obj.incomplete:
            self._pull(doc, obj, report)
        elif doc.get("access_right", obj.csh_access_right) != obj.csh_access_right:
            obj.csh_access_right = doc["access_right"]
            self.state.save(obj)

    def _guard(self, report: SyncReport, oaio_id: str, func: Callable[..., Any], *args: Any) -> Any:
        """Run one object's step; record its error unless the whole sync must stop.

        A failed step may have changed the in-memory record half-way: it is re-read from
        disk (every step saves what the server has confirmed as soon as it is confirmed).
        """
        try:
            return func(*args)
        except (Unavailable, Unauthorized):
            self.state.discard_changes(oaio_id)
            raise
        except (OaioError, OSError) as exc:
            self.state.discard_changes(oaio_id)
            text = exc.message if isinstance(exc, OaioError) else f"local file error: {exc}"
            report.errors.append(f"{oaio_id}: {text}")
            log.warning("sync of %s failed: %s", oaio_id, text)
        except (KeyError, TypeError, ValueError) as exc:     # a malformed document: skip it, keep going
            self.state.discard_changes(oaio_id)
            report.errors.append(f"{oaio_id}: unexpected data ({type(exc).__name__}: {exc})")
            log.exception("sync of %s failed on unexpected data", oaio_id)
        return None

    # --- push ---
    def _push_all(self, report: SyncReport, only_new: bool = False) -> set[str]:
        pushed: set[str] = set()
        dirty = sorted((o for o in self.state.objects.values() if o.dirty), key=lambda o: o.client_stamp)
        for obj in dirty:
            if only_new and (obj.server_version or obj.pending_delete):
                continue
            if self._guard(report, obj.oaio_id, self._push, obj, report):
                pushed.add(obj.oaio_id)
        return pushed

    def _push(self, obj: OaiObject, report: SyncReport) -> bool:
        """Send one dirty record; True when the server has it now."""
        if obj.pending_delete:
            self._push_delete(obj, report)
            return False
        local_paths = path_list(obj.client_values)    # before a merge adds other devices' files
        base_paths = path_list(obj.server_values)
        try:
            if obj.server_version == 0:
                self._push_create(obj)
            else:
                self._push_values(obj, report)
            self._push_files(obj, local_paths, base_paths, report)
        except Forbidden as exc:
            self._keep_refused_edit(obj, report, exc)
            return True
        except (NotFound, Gone) as exc:     # deleted or unshared meanwhile: the vanish step keeps the edit
            log.info("push of %s: %s", obj.oaio_id, exc.message)
            return False
        obj.server_stamp = obj.client_stamp
        self.state.save(obj)
        return True

    def _push_delete(self, obj: OaiObject, report: SyncReport) -> None:
        if obj.server_version > 0:
            try:
                self.api.delete_object(obj.oaio_id, base_version=obj.server_version)
            except (NotFound, Gone):
                pass
            except (VersionConflict, Forbidden) as exc:
                obj.pending_delete = False
                obj.client_values, obj.client_stamp = dict(obj.server_values), obj.server_stamp
                self.state.save(obj)          # not dirty any more: the pull brings the server's version
                report.errors.append(f"{obj.oaio_id}: not deleted on the server, it was kept: {exc.message}")
                return
        self.state.remove(obj.oaio_id)
        if not obj.root_path:
            self.state.wipe_object_files(obj.oaio_id)
        report.removed.append(obj.oaio_id)

    def _push_create(self, obj: OaiObject) -> None:
        try:
            doc = self.api.create_object(obj.client_values, obj.oaio_id, app_id=obj.app_id,
                                         device_id=obj.device_id, stamp=obj.client_stamp or None)
        except AlreadyExists:
            doc = self.api.get_object(obj.oaio_id)       # our earlier create whose answer got lost?
            if doc.get("owner") != self.username:
                raise
            self._adopt_doc(obj, doc)
            self._push_values(obj, None)
            return
        obj.server_version = doc["version"]
        obj.server_values = doc["values"]
        obj.csh_access_right = doc.get("access_right", obj.csh_access_right)
        self.state.save(obj)

    def _adopt_doc(self, obj: OaiObject, doc: dict[str, Any]) -> None:
        obj.server_version = doc["version"]
        obj.server_values = doc["values"]
        obj.csh_access_right = doc.get("access_right", obj.csh_access_right)
        obj.files = {self._clean(fd["path"]): self._file_entry(fd) for fd in doc.get("files", [])}

    def _push_values(self, obj: OaiObject, report: SyncReport | None) -> None:
        if obj.client_values == obj.server_values:
            return
        try:
            doc = self.api.update_values(obj.oaio_id, obj.client_values, mode="replace",
                                         base_version=obj.server_version)
        except VersionConflict:
            doc = self._merge_values(obj, report)
        obj.server_version = doc["version"]
        obj.client_values = dict(doc["values"])
        obj.server_values = doc["values"]
        self.state.save(obj)

    def _merge_values(self, obj: OaiObject, report: SyncReport | None) -> dict[str, Any]:
        """Three-way merge after a 409; clashing local values are kept as conflict entries."""
        for attempt in range(MAX_MERGE_ATTEMPTS):
            server = self.api.get_object(obj.oaio_id)
            merged, clashes = merge_with_conflict_copies(obj.server_values, obj.client_values,
                                                         server["values"], self.origin)
            try:
                doc = self.api.update_values(obj.oaio_id, merged, mode="replace", base_version=server["version"])
            except VersionConflict:
                if attempt == MAX_MERGE_ATTEMPTS - 1:
                    raise
                continue
            if clashes and report is not None:
                report.conflicts.append(f"{obj.oaio_id}: values {', '.join(clashes)} were changed on the server "
                                        f"too; the local values are kept as '<key> (conflict {self.origin} …)'")
            return doc
        raise AssertionError("unreachable")

    def _push_files(self, obj: OaiObject, local_paths: list[Any], base_paths: list[Any],
                    report: SyncReport) -> None:
        """Upload the changed files of ``local_paths`` (this device's ``_file_paths``).

        Only files this device dropped from ``_file_paths`` (listed in the base, not any
        more locally) are deleted on the server; files attached by other means (the
        drive, other clients) that were never listed are left alone.
        """
        root = self.files_root(obj)
        wanted: list[str] = []
        for raw in local_paths:
            try:
                wanted.append(self._clean(raw))
            except InvalidValue as exc:
                report.errors.append(f"{obj.oaio_id}: attached file path refused: {exc.message}")
        added_conflicts: list[str] = []
        batch = batch_push.BatchPush(self.api, obj.oaio_id)
        dropped = [p for p in base_paths if p not in wanted and obj.files.get(p, {}).get("kind") == "file"]
        for path in wanted:
            local = safe_join(root, path)
            if not local.is_file():
                report.errors.append(f"{obj.oaio_id}: attached file {path!r} is missing in {root}")
                continue
            known = obj.files.get(path)
            sha = local_sha256(local, known)
            if known and known.get("sha256") == sha:
                changed = file_meta.meta_changed(local, known)      # chmod/touch only: no bytes again
                if changed:
                    self.api.set_file_meta(obj.oaio_id, path, mode=changed.get("mode"),
                                           mtime_ns=changed.get("mtime_ns"))
                    obj.files[path] = {**known, **changed, "local": stat_key(local)}
                    self.state.save(obj)
                continue
            base = int((known or {}).get("version") or 0)
            if sha is not None and batch.add(path, local, sha, known, base, pending=path in obj.uploads):
                continue                       # a small file: sent with others in one batch request below
            sha = sha or file_sha256(local)
            try:
                result = self._upload(obj, path, local, sha, base)
            except VersionConflict:
                self._conflict(obj, path, local, sha, known, report, added_conflicts)
                continue
            self._uploaded(obj, path, local, sha, int(result.get("version", 0)), report)
        for path, local, sha, known, outcome in batch.send():
            if outcome == batch_push.CONFLICT:
                self._conflict(obj, path, local, sha, known, report, added_conflicts)
            else:
                self._uploaded(obj, path, local, sha, int(outcome), report)
        for path in dropped:
            try:
                self.api.delete_file(obj.oaio_id, path, base_version=obj.files[path].get("version"))
            except NotFound:
                pass
            except VersionConflict:
                report.conflicts.append(f"{obj.oaio_id}: file {path!r} was removed here but changed on the "
                                        "server; the server's version is kept")
            del obj.files[path]
            self.state.save(obj)
        if added_conflicts:
            self._add_file_paths(obj, added_conflicts)

    def _uploaded(self, obj: OaiObject, path: str, local: Path, sha: str, version: int, report: SyncReport) -> None:
        obj.files[path] = {"kind": "file", "sha256": sha, "size": local.stat().st_size,
                           "version": version, "mtime": local.stat().st_mtime,
                           "local": stat_key(local), **file_meta.local_meta(local)}
        self.state.save(obj)               # confirmed by the server: keep it even if a later step fails
        report.uploaded.append(f"{obj.oaio_id}/{path}")

    def _conflict(self, obj: OaiObject, path: str, local: Path, sha: str, known: dict[str, Any] | None,
                  report: SyncReport, added_conflicts: list[str]) -> None:
        copy = self._upload_conflict_copy(obj, path, local, sha)
        added_conflicts.append(copy)
        # the local bytes are safe in the copy: let the pull replace them with the server's
        obj.files[path] = {**(known or {}), "kind": "file", "sha256": sha, "local": stat_key(local)}
        report.conflicts.append(f"{obj.oaio_id}: file {path!r} was changed on the server too; "
                                f"the local version is kept as {copy!r}")

    def _upload(self, obj: OaiObject, path: str, local: Path, sha: str, base: int) -> dict[str, Any]:
        """Resumable upload of one file; the tus URL is persisted so a new process resumes it."""
        size = local.stat().st_size
        pending = obj.uploads.get(path)
        url = None
        if pending and pending.get("sha256") == sha and pending.get("base_version") == base:
            url = pending.get("url")

        def remember(new_url: str) -> None:
            obj.uploads[path] = {"url": new_url, "sha256": sha, "size": size, "base_version": base, "offset": 0}
            self.state.save(obj)

        def progress(offset: int, _total: int) -> None:
            entry = obj.uploads.get(path)
            if entry is not None and entry.get("offset") != offset:
                entry["offset"] = offset
                self.state.save(obj)

        try:
            meta = file_meta.local_meta(local)
            result = self.uploader.upload_file(local, obj.oaio_id, path, url=url, sha256=sha, base_version=base,
                                               on_url=remember, on_progress=progress, **meta)
        except VersionConflict:
            obj.uploads.pop(path, None)       # that upload can never commit
            self.state.save(obj)
            raise
        if obj.uploads.pop(path, None) is not None:
            self.state.save(obj)
        return result

    def _upload_conflict_copy(self, obj: OaiObject, path: str, local: Path, sha: str) -> str:
        """Upload ``local`` under a fresh conflict name (and keep it there locally too)."""
        when = _dt.datetime.now(_dt.timezone.utc)
        for attempt in range(1, 6):
            copy = conflict_path(path, self.origin, when, attempt)
            try:
                result = self._upload(obj, copy, local, sha, 0)
            except VersionConflict:
                continue
            target = safe_join(self.files_root(obj), copy)
            shutil.copy2(local, target)
            obj.files[copy] = {"kind": "file", "sha256": sha, "size": local.stat().st_size,
                               "version": int(result.get("version", 0)), "mtime": local.stat().st_mtime,
                               "local": stat_key(target)}
            return copy
        raise VersionConflict(f"no free conflict name for {path!r}")

    def _add_file_paths(self, obj: OaiObject, paths: list[str]) -> None:
        """Append ``paths`` to the server's ``_file_paths`` (re-read and retried on 409)."""
        for attempt in range(MAX_MERGE_ATTEMPTS):
            doc = self.api.get_object(obj.oaio_id)
            current = doc["values"].get("_file_paths")
            current = list(current) if isinstance(current, list) else []
            new_list = current + [p for p in paths if p not in current]
            try:
                doc = self.api.update_values(obj.oaio_id, {"_file_paths": new_list}, mode="merge",
                                             base_version=doc["version"])
            except VersionConflict:
                if attempt == MAX_MERGE_ATTEMPTS - 1:
                    raise
                continue
            obj.client_values = dict(doc["values"])
            obj.server_values = doc["values"]
            obj.server_version = doc["version"]
            return

    def _keep_refused_edit(self, obj: OaiObject, report: SyncReport, exc: OaioError) -> None:
        """The server refused a local edit (403): keep it as a new object, fall back to the server's."""
        copy = self.make_conflict_copy(obj)
        obj.client_values, obj.client_stamp = dict(obj.server_values), obj.server_stamp
        obj.uploads.clear()
        root = self.files_root(obj)
        for path, known in obj.files.items():      # the copy holds the local bytes: the pull may replace them
            with contextlib.suppress(InvalidValue, OSError):
                local = safe_join(root, path)
                if known.get("kind") == "file" and local.is_file():
                    known.update(sha256=file_sha256(local), local=stat_key(local))
        if obj.server_version == 0:
            self.state.remove(obj.oaio_id)
        else:
            self.state.save(obj)
        report.conflicts.append(f"{obj.oaio_id}: the server refused the local change ({exc.message}); "
                                f"it is kept as the new object {copy.oaio_id!r}")

    def make_conflict_copy(self, obj: OaiObject) -> OaiObject:
        """A new, unsynced object of this user holding ``obj``'s local values and files."""
        when = _dt.datetime.now(_dt.timezone.utc)
        values = dict(obj.client_values)
        name = values.get("_name") or obj.oaio_id
        values["_name"] = f"{name} (conflict {self.origin} {when.astimezone():%Y-%m-%d %H-%M})"
        values.pop("_root_path", None)
        stamp = next_stamp()
        copy = OaiObject(make_oaio_id(self.app_id, self.username, self.device_id, values, stamp),
                         client_stamp=stamp, client_values=values, username=self.username,
                         device_id=self.device_id, app_id=self.app_id, csh_access_right="C")
        src_root, dst_root = self.files_root(obj), self.files_root(copy)
        listed: list[str] = values["_file_paths"] if isinstance(values.get("_file_paths"), list) else []
        present = list_files(src_root) if not obj.root_path and src_root.is_dir() else []
        candidates = dict.fromkeys([*listed, *(p for p, f in obj.files.items() if f.get("kind") == "file"),
                                    *present])
        copied = []
        for raw in candidates:
            try:
                src, dst = safe_join(src_root, raw), safe_join(dst_root, raw)
            except InvalidValue:
                continue
            if src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
                copied.append(raw)
        if copied or "_file_paths" in values:
            values["_file_paths"] = copied
        self.state.save(copy)
        log.warning("kept local edits of %s as conflict copy %s", obj.oaio_id, copy.oaio_id)
        return copy

    # --- pull ---
    @staticmethod
    def _clean(path: Any) -> str:
        return normalize_file_path(path)

    @staticmethod
    def _file_entry(fd: dict[str, Any]) -> dict[str, Any]:
        return {k: fd.get(k) for k in ("kind", "sha256", "size", "version", "mtime", "mode", "mtime_ns", "target")}

    def _pull(self, doc: dict[str, Any], obj: OaiObject | None, report: SyncReport) -> None:
        """Make the local copy of one object equal to the server's ``doc``."""
        oaio_id = doc["oaio_id"]
        if obj is None:
            obj = OaiObject(oaio_id, username=doc.get("owner", ""), device_id=doc.get("device_id", ""),
                            app_id=doc.get("app_id", ""))
        root = self.files_root(obj)
        server_files: dict[str, dict[str, Any]] = {}
        obj.incomplete = False
        for fd in doc.get("files", []):
            try:
                path = self._clean(fd.get("path"))
                safe_join(root, path)
            except InvalidValue as exc:
                report.errors.append(f"{oaio_id}: refused file path from the server: {exc.message}")
                obj.incomplete = True
                continue
            server_files[path] = fd
        fetch: dict[str, dict[str, Any]] = {}
        confine = Path(obj.root_path) if obj.root_path else self.state.root
        for path, fd in server_files.items():
            target = safe_join(root, path)
            if fd.get("kind") == "dir":
                target.mkdir(parents=True, exist_ok=True)
                continue
            if fd.get("kind") == protocol.KIND_LINK:
                try:
                    if file_meta.make_link(confine, target, fd.get("target") or ""):
                        report.downloaded.append(f"{oaio_id}/{path}")
                except (InvalidValue, OSError) as exc:
                    report.errors.append(f"{oaio_id}: link {path!r} not created: {getattr(exc, 'message', exc)}")
                    obj.incomplete = True
                continue
            known = obj.files.get(path)
            local_sha = local_sha256(target, known)
            if local_sha == fd.get("sha256"):
                if fd.get("mode") is not None and file_meta.meta_changed(target, {**fd}):
                    with contextlib.suppress(OSError):
                        file_meta.apply_meta(target, fd)              # chmod/touch made elsewhere
                continue
            base_sha = (known or {}).get("sha256")
            if local_sha is not None and local_sha != base_sha:   # edited here without update_file
                keep = conflict_path(path, self.origin, _dt.datetime.now(_dt.timezone.utc))
                os.replace(target, safe_join(root, keep))
                report.conflicts.append(f"{oaio_id}: unregistered local change of {path!r} kept as {keep!r}")
            fetch[path] = fd
        self._download(oaio_id, fetch, root, report)
        for path, known in obj.files.items():
            if path in server_files or known.get("kind") == "dir" or obj.root_path:
                continue                      # never delete inside a user-chosen folder
            with contextlib.suppress(InvalidValue, OSError):
                target = safe_join(root, path)
                if known.get("kind") == protocol.KIND_LINK:
                    if target.is_symlink() and os.readlink(target) == known.get("target"):
                        target.unlink()
                elif local_sha256(target, known) == known.get("sha256"):
                    target.unlink()
        obj.files = {p: self._file_entry(fd) for p, fd in server_files.items()}
        for path, entry in obj.files.items():    # every file here now has the server's content
            with contextlib.suppress(OSError):
                if entry.get("kind") == "file":
                    entry["local"] = stat_key(root / path)
        obj.client_values = dict(doc.get("values", {}))
        obj.server_values = dict(doc.get("values", {}))
        obj.server_version = int(doc["version"])
        obj.csh_access_right = doc.get("access_right", obj.csh_access_right)
        obj.username = doc.get("owner", obj.username)
        obj.client_stamp = obj.server_stamp = doc.get("stamp", "")
        self.state.save(obj, durable=False)    # a copy of server data: flushed once before the cursor moves

    def _download(self, oaio_id: str, fetch: dict[str, dict[str, Any]], root: Path, report: SyncReport) -> None:
        """Fetch ``fetch`` (path -> FileDoc) through one cart into ``staging/``, then move into ``root``.

        ``CartDownloader`` refuses unsafe member names and checks each file against the
        sha256 asked for, so only verified bytes ever reach ``root``.
        """
        if not fetch:
            return
        staging = self.state.staging_dir / uuid.uuid4().hex
        try:
            self.downloader.fetch([cart_entry(oaio_id, p, fd.get("sha256") or "") for p, fd in fetch.items()],
                                  staging, timeout=CART_WAIT_S)
            for path, fd in fetch.items():
                target = safe_join(root, path)
                target.parent.mkdir(parents=True, exist_ok=True)
                if not is_inside(target.parent, root):
                    raise InvalidValue("file path leads outside its root folder", {"path": path})
                os.replace(safe_join(staging, path), target)
                with contextlib.suppress(OSError):
                    file_meta.apply_meta(target, fd)
                report.downloaded.append(f"{oaio_id}/{path}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _has_unsynced_files(self, obj: OaiObject) -> bool:
        """True if ``client_root/filez/<id>/`` holds a file that differs from (or is unknown to) the last sync."""
        root = self.files_root(obj)
        if obj.root_path or not root.is_dir():
            return False
        for path in list_files(root):
            known = obj.files.get(path)
            if known is None or local_sha256(root / path, known) != known.get("sha256"):
                return True
        return False

    def forget(self, obj: OaiObject, report: SyncReport) -> None:
        """``obj`` is no longer on the server for this user: remove it, keeping un-pushed edits."""
        if obj.dirty or self._has_unsynced_files(obj):
            copy = self.make_conflict_copy(obj)
            report.conflicts.append(f"{obj.oaio_id} was deleted or unshared on the server; the local changes "
                                    f"are kept as the new object {copy.oaio_id!r}")
        self.state.remove(obj.oaio_id)
        if not obj.root_path:
            self.state.wipe_object_files(obj.oaio_id)
        report.removed.append(obj.oaio_id)
