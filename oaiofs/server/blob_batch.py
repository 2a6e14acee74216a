"""Store many small blobs at once (a batch commit's files), each durable before this returns.

Every blob goes the way of a single upload: a staging area, one write, ``staging_commit``
(local store: fsync, then an atomic rename; S3: a copy to the final key), the staging area
dropped. A blob already stored is skipped (dedupe). The blobs are stored by a small thread
pool, so their fsyncs overlap (ext4 groups concurrent fsyncs into one journal commit) and an
S3 store's requests run side by side. The caller holds the blob collector's commit lock, so
nothing stored here is collected before the transaction that names it commits.
"""
from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping

from ..errors import NotFound

WORKERS = 8            # blobs stored at once (a batch holds at most protocol.BATCH_MAX_FILES)


def store_one(blobs: Any, key: str, data: bytes) -> None:
    """Store ``data`` as blob ``key`` unless it is there."""
    if blobs.exists(key):
        return
    for attempt in (1, 2):          # the purge may take a staging area that belongs to no upload row
        staging_id = "batch-" + secrets.token_urlsafe(18)
        try:
            state = blobs.staging_create(staging_id)
            state = blobs.staging_write(staging_id, 0, data, state)
            blobs.staging_commit(staging_id, key, state)
            return
        except NotFound:
            if attempt == 2:
                raise
        finally:
            blobs.staging_delete(staging_id, {})


def store_many(blobs: Any, data_by_key: Mapping[str, bytes]) -> None:
    """Store every ``key -> bytes`` (all durable on return; the first error is raised after all ran)."""
    if len(data_by_key) <= 1:
        for key, data in data_by_key.items():
            store_one(blobs, key, data)
        return
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(data_by_key)), thread_name_prefix="blob-batch") as pool:
        futures = [pool.submit(store_one, blobs, key, data) for key, data in data_by_key.items()]
    for future in futures:
        future.result()
