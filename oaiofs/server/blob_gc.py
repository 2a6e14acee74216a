"""Blob garbage collection: remove blobs no file entry, cart or upload refers to any more.

Blobs are content-addressed and shared, so replacing or deleting a file only drops a
reference. :func:`referenced_keys` is the one place that knows what refers to a blob
(file entries, kept versions of the history, cart members, uploads that have hashed their
bytes, files the ae.oaio_client compatibility layer staged). A blob is removed once it has been *seen*
unreferenced for ``blob_gc_grace_s`` (the ``blob_gc`` table remembers since when) and
its bytes are at least that old; the final reference check and the removal happen in
one transaction under the collector's lock, which an upload takes (shared) when it
records the sha256 it is about to commit, so a blob being committed concurrently, even
one that dedupes onto an old unreferenced blob, is never collected.

Run by the server's background purge (:func:`purge_expired`) and by ``oaiofs gc``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any, Collection

from sqlalchemy import delete, select, text, union
from sqlalchemy.orm import Session

from . import db as dbmod
from . import history
from .blobs import blob_key
from .models import BlobGc, CartFile, FileEntry, Upload, utcnow
from .models_compat import CompatAeStagedFile
from .models_trash import TrashFile

logger = logging.getLogger(__name__)

GC_LOCK_KEY = 0x0A10F7          # PostgreSQL advisory lock: exclusive for the collector, shared for commits
DELETE_BATCH = 100              # blobs re-checked and removed per transaction
QUERY_BATCH = 500               # keys per IN (...) list


def lock_for_commit(db: Session) -> None:
    """Taken by an upload in the transaction that records the sha256 it will commit (shared)."""
    if dbmod.is_sqlite(db.get_bind()):
        dbmod.lock_for_write(db)
    else:
        db.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": GC_LOCK_KEY})


def lock_for_collect(db: Session) -> None:
    """Taken by the collector around its final reference check and the removal (exclusive)."""
    if dbmod.is_sqlite(db.get_bind()):
        dbmod.lock_for_write(db)
    else:
        db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": GC_LOCK_KEY})


def _reference_query(keys: Collection[str] | None, shas: Collection[str] | None) -> Any:
    """One statement (one snapshot, also under READ COMMITTED) over every table that refers to blobs."""
    files = select(FileEntry.blob_key.label("ref")).where(FileEntry.blob_key.is_not(None))
    carts = select(CartFile.blob_key.label("ref")).where(CartFile.blob_key.is_not(None))
    uploads = select(Upload.sha256.label("ref")).where(Upload.sha256.is_not(None))
    staged = select(CompatAeStagedFile.blob_key.label("ref"))       # ae.oaio_client files deployed, not yet attached
    trashed = select(TrashFile.blob_key.label("ref")).where(TrashFile.blob_key.is_not(None))   # server/trash.py
    if keys is not None:
        files = files.where(FileEntry.blob_key.in_(keys))
        carts = carts.where(CartFile.blob_key.in_(keys))
        uploads = uploads.where(Upload.sha256.in_(shas or ()))
        staged = staged.where(CompatAeStagedFile.blob_key.in_(keys))
        trashed = trashed.where(TrashFile.blob_key.in_(keys))
    kept_versions = history.blob_refs(keys)       # versions kept by the history's retention policy
    return union(files, carts, uploads, staged, trashed, kept_versions)


def referenced_keys(db: Session, keys: Collection[str] | None = None) -> set[str]:
    """The blob keys something still refers to (all, or those among ``keys``).

    File entries and cart members hold keys; uploads hold the sha256 of the bytes they
    are committing (announced or computed), which names the key they will use.
    """
    found: set[str] = set()
    batches = [None] if keys is None else [list(keys)[i:i + QUERY_BATCH] for i in range(0, len(keys), QUERY_BATCH)]
    for batch in batches:
        shas = None if batch is None else [k.rsplit("/", 1)[-1] for k in batch]
        for (ref,) in db.execute(_reference_query(batch, shas)):
            found.add(ref if ref.startswith("sha256/") else _key_of(ref))
    return found


def _key_of(sha256: str) -> str:
    try:
        return blob_key(sha256.lower())
    except Exception:  # noqa: BLE001 - a malformed announced hash refers to nothing
        return ""


@dataclasses.dataclass
class GcReport:
    """What a collection found: removed (or, dry run, due) blobs and those still in their grace period."""

    blobs: int = 0
    referenced: int = 0
    removed: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    waiting: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    dry_run: bool = False

    @property
    def removed_bytes(self) -> int:
        return sum(size for _key, size in self.removed)


def collect(state: Any, *, dry_run: bool = False, grace_s: float | None = None,
            now: dt.datetime | None = None) -> GcReport:
    """One collection over the whole blob store (see the module docstring)."""
    blobs = state.blobs
    grace = dt.timedelta(seconds=state.settings.blob_gc_grace_s if grace_s is None else grace_s)
    now = now or utcnow()
    listed = {key: (mtime, size) for key, mtime, size in blobs.list_blobs()}
    report = GcReport(blobs=len(listed), dry_run=dry_run)
    with dbmod.transaction(state) as db:
        if dry_run:                          # what a real run would remove: after the history's trim
            history.trim(db, state.settings)
        refs = referenced_keys(db)
        seen = {row.key: dbmod.aware(row.since) for row in db.scalars(select(BlobGc))}
        if dry_run:
            db.rollback()
    report.referenced = len(set(listed) & refs)
    unreferenced = [key for key in listed if key not in refs]
    cutoff = now - grace
    due = [k for k in unreferenced
           if seen.get(k, now) <= cutoff and listed[k][0] <= cutoff.timestamp()]
    report.waiting = [(k, listed[k][1]) for k in unreferenced if k not in set(due)]
    if dry_run:
        report.removed = [(k, listed[k][1]) for k in due]
        return report
    with dbmod.transaction(state) as db:              # forget blobs that are gone or referenced again; note new ones
        lock_for_collect(db)
        seen_now = set(db.scalars(select(BlobGc.key)))        # another process may have collected meanwhile
        stale = [k for k in seen_now if k not in listed or k in refs]
        for start in range(0, len(stale), QUERY_BATCH):
            db.execute(delete(BlobGc).where(BlobGc.key.in_(stale[start:start + QUERY_BATCH])))
        fresh = [k for k in unreferenced if k not in seen_now]
        if fresh:
            db.add_all([BlobGc(key=k, since=now) for k in fresh])
    for start in range(0, len(due), DELETE_BATCH):
        batch = due[start:start + DELETE_BATCH]
        with dbmod.transaction(state) as db:          # final check and removal under the exclusive lock
            lock_for_collect(db)
            still = referenced_keys(db, batch)
            gone = [k for k in batch if k not in still]
            for key in gone:
                blobs.delete(key)
            db.execute(delete(BlobGc).where(BlobGc.key.in_(batch)))
        report.removed.extend((k, listed[k][1]) for k in gone)
    if report.removed:
        logger.info("blob gc: removed %d unreferenced blobs (%d bytes); %d wait out their grace period",
                    len(report.removed), report.removed_bytes, len(report.waiting))
    return report


def purge_expired(state: Any) -> int:
    """Hook for the server's periodic purge: one collection; returns how many blobs went."""
    if state.blobs is None or not hasattr(state.blobs, "list_blobs"):
        return 0
    return len(collect(state).removed)
