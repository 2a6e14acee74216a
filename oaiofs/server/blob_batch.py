"""Store many small blobs at once (a batch commit's files), each durable before this returns.

Each blob is stored with the store's ``put_small`` (local store: a staging file written,
fsynced and renamed into place; S3: one PUT of the final key), skipped if it is stored
already (dedupe). A small thread pool stores them side by side, so the local store's fsyncs
overlap (ext4 groups concurrent fsyncs into one journal commit) and an S3 store's requests
run in parallel. The caller holds the blob collector's commit lock, so nothing stored here
is collected before the transaction that names it commits.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping

WORKERS = 8            # blobs stored at once (a batch holds at most protocol.BATCH_MAX_FILES)


def store_many(blobs: Any, data_by_key: Mapping[str, bytes]) -> None:
    """Store every ``key -> bytes`` (all durable on return; the first error is raised after all ran)."""
    if len(data_by_key) <= 1:
        for key, data in data_by_key.items():
            blobs.put_small(key, data)
        return
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(data_by_key)), thread_name_prefix="blob-batch") as pool:
        futures = [pool.submit(blobs.put_small, key, data) for key, data in data_by_key.items()]
    for future in futures:
        future.result()
