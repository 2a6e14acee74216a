"""The upload service: upload records, staging writes, whole-file verification and the atomic commit.

Shared by the tus endpoint (:mod:`oaiofs.server.routes_uploads`) and the plain ``PUT`` of
:mod:`oaiofs.server.routes_files`; their request glue (streaming a body in, one request per
upload at a time) is :mod:`oaiofs.server.http_uploads`. Upload state (target, offset, segments, expiry)
lives in the ``uploads`` table and the bytes in the blob store's staging area, so
any server process can continue an upload after a client crash, a cut connection
or a server restart. Bodies are streamed to the staging area in bounded buffers
(receiving the next one overlaps writing the last), never held whole in memory.

A chunk is idempotent by offset: bytes before the upload's offset (a re-send) are
only checksummed, the rest is appended. Without a chunk checksum the bytes that
arrived before a cut connection are kept; with one, a chunk is kept only if it
matches. On the last byte :meth:`UploadService.complete` checks the whole-file
sha256, moves the bytes to their content-addressed blob and commits the file as a
new version of the object (a mismatch or a lost conflict commits nothing).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, cast

from cachetools import LRUCache
from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from .. import protocol
from ..errors import (ChecksumMismatch, Conflict, Gone, InvalidInput, InvalidValue, NotFound, OaioError,
                      OffsetMismatch, TooLarge, VersionConflict)
from . import access, blob_gc, objects
from . import db as dbmod
from .db import aware
from .blobs import blob_key
from .models import FileEntry, OaiObject, Upload, User, utcnow
from .state import AppState, transaction

logger = logging.getLogger(__name__)

WRITE_BUFFER = 4 << 20                # bytes gathered before one staging write
CHUNK_HASHERS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}   # tus checksum algorithms
_SHA256_HEX = frozenset("0123456789abcdef")



@dataclass
class Target:
    """Where an upload goes and what it promises (from ``Upload-Metadata``)."""

    oaio_id: str
    path: str
    base_version: int | None = None
    sha256: str | None = None
    mtime: float | None = None
    mtime_ns: int | None = None
    mode: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


def parse_target(meta: dict[str, str]) -> Target:
    """Validate the Upload-Metadata keys ``oaio_id``, ``path``, ``base_version``, ``sha256``, ``mtime``."""
    if protocol.META_OAIO_ID not in meta or protocol.META_PATH not in meta:
        raise InvalidInput("Upload-Metadata must name oaio_id and path")
    target = Target(oaio_id=protocol.validate_oaio_id(meta[protocol.META_OAIO_ID]),
                    path=protocol.normalize_file_path(meta[protocol.META_PATH]), extra=dict(meta))
    raw = meta.get(protocol.META_BASE_VERSION)
    if raw not in (None, ""):
        target.base_version = protocol.parse_ascii_int(raw, "base_version", InvalidValue)
    raw = meta.get(protocol.META_SHA256)
    if raw not in (None, ""):
        raw = raw.lower()
        if len(raw) != 64 or not set(raw) <= _SHA256_HEX:
            raise InvalidValue("sha256 must be 64 hex digits")
        target.sha256 = raw
    raw = meta.get(protocol.META_MTIME)
    if raw not in (None, ""):
        target.mtime = protocol.parse_finite_float(raw, "mtime (seconds since the epoch)")
    raw = meta.get(protocol.META_MTIME_NS)
    if raw not in (None, ""):
        target.mtime_ns = protocol.validate_mtime_ns(raw)
    raw = meta.get(protocol.META_MODE)
    if raw not in (None, ""):
        target.mode = protocol.validate_mode(raw)
    return target


# --- running whole-file hashes (an optimisation: a restart just re-reads the staged bytes) ---

class _RunningHashes:
    """sha256 of the bytes staged so far, per upload, for uploads this process has seen."""

    def __init__(self, size: int = 256) -> None:
        self._lock = threading.Lock()
        self._cache: LRUCache[str, tuple[int, Any]] = LRUCache(size)

    def take(self, upload_id: str, offset: int) -> Any | None:
        """A hasher covering exactly ``[0, offset)``, or None (removed from the cache)."""
        with self._lock:
            entry = self._cache.pop(upload_id, None)
        if entry is not None and entry[0] == offset:
            return entry[1]
        return hashlib.sha256() if offset == 0 else None

    def put(self, upload_id: str, offset: int, hasher: Any | None) -> None:
        if hasher is not None:
            with self._lock:
                self._cache[upload_id] = (offset, hasher)

    def drop(self, upload_id: str) -> None:
        with self._lock:
            self._cache.pop(upload_id, None)


RUNNING_HASHES = _RunningHashes()


@dataclass
class UploadView:
    """A detached snapshot of an ``Upload`` row."""

    id: str
    offset: int
    length: int | None                # None: deferred (tus creation-defer-length) until a PATCH fixes it
    segments: int
    expires: dt.datetime
    completed: bool
    metadata: dict[str, str]
    staging: dict[str, Any]
    result: dict[str, Any] | None

    @classmethod
    def of(cls, row: Upload) -> "UploadView":
        return cls(id=row.id, offset=row.offset, length=row.length, segments=row.segments,
                   expires=aware(row.expires), completed=row.completed is not None,
                   metadata=json.loads(row.metadata_json or "{}"),
                   staging=json.loads(row.staging_json or "{}"),
                   result=json.loads(row.result_json) if row.result_json else None)


class ChunkWriter:
    """Streams one PATCH body into the staging area in bounded buffers.

    Bytes before the upload's current offset (a re-sent range) are only checksummed;
    the rest is written at its offset. Nothing here touches the database.
    """

    def __init__(self, blobs: Any, upload: UploadView, start: int,
                 checksum: tuple[str, bytes] | None, limit: int) -> None:
        self.blobs, self.upload = blobs, upload
        self.limit = limit                    # Upload-Length, or the size limit while it is deferred
        self.position = start                 # offset of the next body byte
        self.written_to = upload.offset       # staged bytes end here
        self.staging = upload.staging
        self.checksum = checksum
        self.chunk_hasher = CHUNK_HASHERS[checksum[0]]() if checksum else None
        self.file_hasher = RUNNING_HASHES.take(upload.id, upload.offset)
        self.buffer = bytearray()

    def feed(self, piece: bytes) -> bool:
        """Add body bytes; True when a flush is due."""
        if self.position + len(self.buffer) + len(piece) > self.limit:
            raise TooLarge("the chunk goes past Upload-Length (or the maximum upload size)",
                           {"upload_length": self.limit, "offset": self.position})
        self.buffer += piece
        return len(self.buffer) >= WRITE_BUFFER

    def take(self) -> bytes:
        """Detach the buffered bytes (to be written with :meth:`write`)."""
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def write(self, data: bytes) -> None:
        """Checksum ``data`` and stage its new part (blocking; run in a worker thread, one at a time)."""
        if self.chunk_hasher is not None:
            self.chunk_hasher.update(data)
        skip = max(0, self.written_to - self.position)
        self.position += len(data)
        fresh = data[skip:] if skip else data
        if not fresh:
            return
        self.staging = self.blobs.staging_write(self.upload.id, self.written_to, fresh, self.staging)
        if self.file_hasher is not None:
            self.file_hasher.update(fresh)
        self.written_to += len(fresh)

    def flush(self) -> None:
        """Write whatever is buffered (blocking)."""
        self.write(self.take())

    def verify(self) -> None:
        """Raise ``ChecksumMismatch`` (460) if the chunk's checksum header does not match."""
        if self.checksum and self.chunk_hasher is not None and self.chunk_hasher.digest() != self.checksum[1]:
            raise ChecksumMismatch(f"{self.checksum[0]} of the chunk does not match Upload-Checksum",
                                   {"offset": self.upload.offset})

    def keep_hash(self) -> None:
        """Remember the running whole-file hash for the next chunk."""
        RUNNING_HASHES.put(self.upload.id, self.written_to, self.file_hasher)


class UploadService:
    """Create, append to, complete, cancel and purge uploads (blocking; call from threads)."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.blobs = state.blobs
        self.settings = state.settings

    # creation
    def create(self, user_id: int, length: int | None, metadata: dict[str, str]) -> UploadView:
        """Check the target (rights, stale base version) and open an empty upload (``length`` None: deferred)."""
        if length is not None and length > self.settings.max_upload_bytes:
            raise TooLarge(f"Upload-Length exceeds the maximum of {self.settings.max_upload_bytes} bytes",
                           {"max_size": self.settings.max_upload_bytes})
        target = parse_target(metadata)
        if length:
            self.blobs.check_space(length)               # 507 now rather than after the bytes came
        upload_id = secrets.token_urlsafe(24)
        with transaction(self.state) as db:
            dbmod.lock_for_write(db)
            user = db.get_one(User, user_id)
            self.check_target(db, user, target)
            now = utcnow()
            row = Upload(id=upload_id, user_id=user_id, oaio_id=target.oaio_id, path=target.path,
                         length=length, offset=0, segments=0, base_version=target.base_version,
                         sha256=target.sha256, mtime=target.mtime,
                         metadata_json=json.dumps(metadata, ensure_ascii=False), staging_json="{}",
                         created=now, expires=now + dt.timedelta(seconds=self.settings.upload_expiry_s))
            db.add(row)
        try:
            staging = self.blobs.staging_create(upload_id)  # after the row: no orphan staging areas
        except BaseException:
            self.discard(upload_id)                         # ... and no orphan row either
            raise
        with transaction(self.state) as db:
            db.execute(update(Upload).where(Upload.id == upload_id).values(staging_json=json.dumps(staging)))
            view = UploadView.of(db.get_one(Upload, upload_id))
        logger.info("upload %s created: %s/%s (%s bytes)", upload_id, target.oaio_id, target.path,
                    "deferred" if length is None else length)
        return view

    @staticmethod
    def check_target(db: Session, user: User, target: Target, *, for_update: bool = False) -> OaiObject | None:
        """The object the upload writes to (None: it will be created), after checking rights and version."""
        try:
            obj, _right = access.load_object(db, user, target.oaio_id, "update", for_update=for_update)
        except NotFound:
            if db.scalar(select(OaiObject.id).where(OaiObject.oaio_id == target.oaio_id)) is not None:
                raise
            if target.base_version not in (None, 0):
                raise VersionConflict(f"{target.path!r} does not exist yet",
                                      {"current_version": 0, "path": target.path}) from None
            return None
        entry = db.scalar(select(FileEntry).where(FileEntry.object_id == obj.id,
                                              FileEntry.path_hash == objects.path_hash(target.path)))
        if entry is not None and entry.kind == "dir":           # a link is replaced by the file
            raise Conflict(f"{target.path!r} is a folder", {"oaio_id": target.oaio_id, "path": target.path})
        objects._check_file_base(obj, target.path, entry, target.base_version)
        return obj

    # lookup
    def get(self, user_id: int, upload_id: str) -> UploadView:
        """The caller's upload (others' and unknown ids: 404; expired ones: 410)."""
        with transaction(self.state) as db:
            view = self.view_of(db, user_id, upload_id)
        return self.unexpired(view)

    @staticmethod
    def view_of(db: Session, user_id: int, upload_id: str) -> UploadView:
        row = db.get(Upload, upload_id)
        if row is None or row.user_id != user_id:
            raise NotFound("no such upload", {"upload_id": upload_id[:80]})
        return UploadView.of(row)

    def unexpired(self, view: UploadView) -> UploadView:
        if view.expires <= utcnow() and not view.completed:
            self.discard(view.id)
            raise Gone("the upload has expired", {"upload_id": view.id})
        return view

    def limit(self, upload: UploadView) -> int:
        """The most bytes ``upload`` may hold: its length, or the size limit while the length is deferred."""
        return self.settings.max_upload_bytes if upload.length is None else upload.length

    def fix_length(self, upload: UploadView, length: int, sha256: str | None) -> UploadView:
        """Set a deferred ``Upload-Length`` (and the whole-file sha256 if none was announced).

        Repeating the length already set is fine; changing it is refused (400).
        """
        if upload.length is not None:
            if length != upload.length:
                raise InvalidValue("Upload-Length cannot be changed once set",
                                   {"upload_length": upload.length, "got": length})
            return upload
        if length < upload.offset or length > self.settings.max_upload_bytes:
            raise InvalidValue("Upload-Length must lie between the received offset and the maximum size",
                               {"offset": upload.offset, "max_size": self.settings.max_upload_bytes})
        metadata = dict(upload.metadata)
        if sha256 and not metadata.get(protocol.META_SHA256):
            metadata[protocol.META_SHA256] = sha256
        parse_target(metadata)                       # a malformed sha256 is refused here
        with transaction(self.state) as db:
            dbmod.lock_for_write(db)
            result = cast("CursorResult[Any]", db.execute(update(Upload).where(Upload.id == upload.id, Upload.length.is_(None))
                                .values(length=length, sha256=parse_target(metadata).sha256,
                                        metadata_json=json.dumps(metadata, ensure_ascii=False))))
            if result.rowcount != 1:
                raise OffsetMismatch("the upload was changed by another request", {"offset": upload.offset})
            view = UploadView.of(db.get_one(Upload, upload.id))
        return view

    # appending
    def save_progress(self, writer: ChunkWriter) -> UploadView:
        """Record the bytes ``writer`` staged (only if nobody else advanced the upload meanwhile)."""
        upload = writer.upload
        expires = utcnow() + dt.timedelta(seconds=self.settings.upload_expiry_s)
        with transaction(self.state) as db:
            dbmod.lock_for_write(db)
            result = cast("CursorResult[Any]", db.execute(update(Upload)
                                .where(Upload.id == upload.id, Upload.offset == upload.offset)
                                .values(offset=writer.written_to, segments=Upload.segments + 1,
                                        staging_json=json.dumps(writer.staging), expires=expires)))
            if result.rowcount != 1:
                RUNNING_HASHES.drop(upload.id)
                current = db.scalar(select(Upload.offset).where(Upload.id == upload.id))
                raise OffsetMismatch("the upload was changed by another request",
                                     {"offset": current})
            view = UploadView.of(db.get_one(Upload, upload.id))
        writer.keep_hash()
        return view

    # completion
    def complete(self, user_id: int, upload: UploadView) -> dict[str, Any]:
        """Verify size and sha256, move the bytes to their blob and commit the file version.

        Idempotent: a completion cut short (e.g. by a crash) can simply be retried.
        A wrong sha256 or a lost conflict discards the upload and commits nothing.
        """
        if upload.completed and upload.result:
            return upload.result
        if upload.length is None:
            raise InvalidInput("the upload's length is still deferred", {"upload_id": upload.id})
        target = parse_target(upload.metadata)
        result = upload.result or {}
        sha256 = result.get("sha256")
        if sha256 is None:
            sha256 = self._whole_file_sha256(upload)
            if target.sha256 and target.sha256 != sha256:
                self.discard(upload.id)
                raise ChecksumMismatch("sha256 of the uploaded file does not match the announced one; "
                                       "nothing was committed",
                                       {"expected": target.sha256, "actual": sha256, "path": target.path})
            with transaction(self.state) as db:
                blob_gc.lock_for_commit(db)       # the upload now refers to the blob (see blob_gc)
                db.execute(update(Upload).where(Upload.id == upload.id)
                           .values(result_json=json.dumps({"sha256": sha256, "size": upload.length}),
                                   sha256=sha256))
        key = blob_key(sha256)
        self.blobs.staging_commit(upload.id, key, upload.staging)
        try:
            result = self._commit_file(user_id, upload.id, target, key, sha256, upload.length)
        except OaioError:                  # stale base, rights revoked, path taken by a folder, ...
            self.discard(upload.id)
            raise
        logger.info("upload %s committed: %s/%s version %s", upload.id, target.oaio_id, target.path,
                    result["version"])
        return result

    def _whole_file_sha256(self, upload: UploadView) -> str:
        assert upload.length is not None    # complete() refuses a deferred length first
        hasher = RUNNING_HASHES.take(upload.id, upload.length)
        if hasher is None:                  # another process or a restart: hash what is staged
            hasher = hashlib.sha256()
            for piece in self.blobs.staging_read(upload.id, upload.staging):
                hasher.update(piece)
        return hasher.hexdigest()

    def _commit_file(self, user_id: int, upload_id: str, target: Target, key: str, sha256: str,
                     size: int) -> dict[str, Any]:
        with transaction(self.state) as db:
            dbmod.lock_for_write(db)
            row = db.get(Upload, upload_id, populate_existing=True)
            if row is None:
                raise NotFound("no such upload", {"upload_id": upload_id})
            if row.completed is not None and row.result_json:
                return json.loads(row.result_json)
            user = db.get_one(User, user_id)
            obj = self.check_target(db, user, target, for_update=True)
            if obj is None:
                obj = objects.create_object(db, user, {}, oaio_id=target.oaio_id)
            entry = objects.commit_file(db, user, obj, target.path, blob_key=key, size=size, sha256=sha256,
                                        mtime=target.mtime, base_version=target.base_version,
                                        mtime_ns=target.mtime_ns, mode=target.mode)
            result = {"version": entry.version, "sha256": sha256, "size": size,
                      "oaio_id": target.oaio_id, "path": target.path}
            row.offset = size
            row.completed = utcnow()
            row.result_json = json.dumps(result)
        return result

    # termination and expiry
    def discard(self, upload_id: str) -> None:
        """Drop an upload's row and staged bytes (committed files are not touched)."""
        RUNNING_HASHES.drop(upload_id)
        with transaction(self.state) as db:
            dbmod.lock_for_write(db)
            row = db.get(Upload, upload_id)
            staging = json.loads(row.staging_json or "{}") if row is not None else {}
            if row is not None:
                db.delete(row)
        self.blobs.staging_delete(upload_id, staging)

    def purge_expired(self, now: dt.datetime | None = None) -> int:
        """Drop expired uploads (live ones are kept) and staging areas that belong to no upload."""
        now = now or utcnow()
        with transaction(self.state) as db:
            expired = list(db.scalars(select(Upload.id).where(Upload.expires < now)))
        for upload_id in expired:
            self.discard(upload_id)
        staged = self.blobs.staging_ids()
        orphans: list[str] = []
        if staged:
            with transaction(self.state) as db:
                known = set(db.scalars(select(Upload.id).where(Upload.id.in_(staged))))
            orphans = [s for s in staged if s not in known]
            for upload_id in orphans:
                self.blobs.staging_delete(upload_id, {})
        if expired or orphans:
            logger.info("purged %d expired uploads and %d orphaned staging areas", len(expired), len(orphans))
        return len(expired) + len(orphans)


def purge_expired(state: AppState) -> int:
    """Hook for the server's periodic purge (also run at start-up): expired uploads and orphaned staging."""
    if state.blobs is None:
        return 0
    return UploadService(state).purge_expired()
