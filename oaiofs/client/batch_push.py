"""Small files of one object go to the server in batch commits (one request, one transaction each).

:class:`BatchPush` collects the files a sync pushes: a small one (at most
:data:`SMALL_FILE_BYTES`, no resumable tus upload pending for it) is read into
memory and queued; :meth:`BatchPush.send` commits the queue with
``ApiClient.commit_batch`` in batches within the protocol's limits and yields each
file's outcome in order: its new version, or :data:`CONFLICT` for a stale base
(the caller keeps the local bytes as a conflict copy, exactly as after a 409 of a
single upload). Any other refusal of a file is raised after the others were yielded.
Big files keep going through tus (resumable).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .. import protocol
from ..errors import OaioError, error_from_response
from . import file_meta

log = logging.getLogger(__name__)

SMALL_FILE_BYTES = 1 << 20        # bigger files use a (resumable) tus upload of their own
CONFLICT = "conflict"


@dataclass
class _Queued:
    path: str
    local: Path
    known: dict[str, Any] | None
    item: protocol.BatchFile


class BatchPush:
    """The small files of one object waiting for a batch commit."""

    def __init__(self, api: Any, oaio_id: str, small_file_bytes: int | None = None) -> None:
        self.api, self.oaio_id = api, oaio_id
        self.small = SMALL_FILE_BYTES if small_file_bytes is None else small_file_bytes
        self.queue: list[_Queued] = []

    def add(self, path: str, local: Path, sha256: str, known: dict[str, Any] | None, base_version: int, *,
            pending: bool = False) -> bool:
        """Queue ``local`` for ``path`` if it is small (True), else leave it to the caller (False)."""
        if pending or local.stat().st_size > self.small:
            return False
        meta = file_meta.local_meta(local)
        data = local.read_bytes()
        if len(data) > self.small:
            return False
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            log.info("%s/%s changed while it was read; sending its current bytes", self.oaio_id, path)
        self.queue.append(_Queued(path, local, known, protocol.BatchFile(
            path, data, actual, base_version=base_version, mtime_ns=meta["mtime_ns"], mode=meta["mode"])))
        return True

    def send(self) -> Iterator[tuple[str, Path, str, dict[str, Any] | None, int | str]]:
        """Commit the queue; yields ``(path, local, sha256, known, version | CONFLICT)`` per file."""
        queued, self.queue = self.queue, []
        failure: OaioError | None = None
        by_path = {q.path: q for q in queued}
        for batch in protocol.plan_batches([q.item for q in queued]):
            results = self.api.commit_batch(self.oaio_id, batch)
            for item, result in zip(batch, results):
                entry = by_path[item.path]
                error = result.get("error") or {}
                if result.get("status") == protocol.BATCH_OK:
                    yield item.path, entry.local, item.sha256, entry.known, int(result["version"])
                elif error.get("error") == "version_conflict":
                    yield item.path, entry.local, item.sha256, entry.known, CONFLICT
                elif failure is None:
                    status = 409 if result.get("status") == protocol.BATCH_CONFLICT else 422
                    failure = error_from_response(status, error)
        log.debug("%s: %d small files sent in batches", self.oaio_id, len(queued))
        if failure is not None:
            raise failure
