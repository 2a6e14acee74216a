"""Batch commits from the journal (issue 16): several small queued files of one object in one request.

The journal hands :func:`take_batch` the queue of one object (its ops in submit order, the head
about to run). When the head and the ops right behind it are small ``put_file`` ops of distinct
paths (no upload in progress, no conflict copy being written, no adopted stream), they form a
batch sent with ``ApiClient.commit_batch`` (one request, one server transaction). A ``mkdir``
among them goes along when a file of the batch lies inside its folder: the server makes a
committed file's missing folders itself (the same folder an explicit ``mkdir`` makes), so a
``git clone`` or ``tar x``, which alternate a folder with its first files, is not cut into a
request per folder.

Per-file results map onto the journal's outcomes:

- ``ok``: the op is done at the returned version; a ``mkdir`` that went along is done when a
  file inside its folder is (else it is applied on its own, after the batch);
- ``conflict`` / ``error``: ``None`` — the journal applies that op on its own, exactly as if
  the batch had not existed (a stale base then takes the single PUT's 409 path: the server's
  version keeps the name and the local bytes go to a conflict copy; an error takes the single
  PUT's error path: retried if transient, else failed with the bytes kept).

A whole-request failure (server unreachable, 413, ...) gives ``None`` for every op: all are
applied one by one. Ordering is kept: a batch is a run of consecutive ops of one object with
distinct paths (with parallel ops on: ops independent of every earlier queued op, see
:mod:`oaiofs.vfs.schedule`), and no op that depends on a batch member runs until it has finished.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

from .. import protocol
from ..errors import OaioError
from .apply import Outcome
from .counters import COUNTERS
from .opstore import Op

log = logging.getLogger(__name__)

BATCH_FILE_MAX = 256 << 10       # files up to this size go into batches (bigger ones: tus, resumable)
BATCH_MIN = 1                    # a lone small file too: one request instead of a tus create + PATCH


def batchable(op: Op, streamed: bool) -> bool:
    """True if ``op`` may go into a batch."""
    return (op.kind == "put_file" and not streamed and not op.upload_url and not op.conflict_path
            and op.size <= BATCH_FILE_MAX and bool(op.sha256) and bool(op.data_file))


def take_batch(queue: Iterable[Op], streams: Any, limit: int = protocol.BATCH_MAX_FILES,
               skip: bool = False) -> list[Op]:
    """The head of ``queue`` and the batchable ops right behind it (distinct paths, and the
    ``mkdir`` ops among them whose folder gets a file of the batch); [] if fewer than
    :data:`BATCH_MIN` files. ``streams``: op ids with an adopted stream (never batched).
    ``skip``: ``queue`` holds only ops independent of each other (:func:`oaiofs.vfs.schedule.runnable`),
    so an op that cannot be batched is passed over instead of ending the batch."""
    ops: list[Op] = []
    paths: set[str] = set()
    size = 0
    for op in queue:
        if len(ops) >= limit:
            break
        if op.kind == "mkdir" and op.state == "pending" and op.path not in paths and not skip:
            ops.append(op)                 # kept only if a file of the batch lands inside (below)
            paths.add(op.path)
            continue
        if op.state != "pending" or not batchable(op, op.id in streams) or op.path in paths:
            if skip and ops:
                continue
            break
        if size + op.size > protocol.BATCH_MAX_BYTES // 2:
            break
        ops.append(op)
        paths.add(op.path)
        size += op.size
    ops = ops[:_first_empty_folder(ops)]
    return ops if sum(op.kind == "put_file" for op in ops) >= BATCH_MIN else []


def _first_empty_folder(ops: Sequence[Op]) -> int:
    """The index of the first ``mkdir`` no later file of ``ops`` lies inside (the batch ends
    before it: the folder is made by its own op, in order), or ``len(ops)``. One pass from the
    end: O(ops x depth), not O(mkdirs x ops) (it runs under the journal's lock)."""
    first = len(ops)
    filled: set[str] = set()              # every folder holding a file seen so far (from the end)
    for i in range(len(ops) - 1, -1, -1):
        op = ops[i]
        if op.kind == "put_file":
            filled.update(protocol.parent_dirs(op.path))
        elif op.kind == "mkdir" and op.path not in filled:
            first = i
    return first


def apply_batch(api: Any, ops: Sequence[Op], doc_of: Any) -> list[Outcome | None]:
    """Commit ``ops`` (one object) in one request; one outcome per op, None: apply it alone."""
    if any(op.kind == "mkdir" for op in ops):
        return _with_folders(api, ops, doc_of)
    oaio_id = ops[0].oaio_id
    try:
        files = [protocol.BatchFile(op.path, Path(op.data_file or "").read_bytes(), op.sha256 or "",
                                    op.base_version, op.mtime_ns, op.mode) for op in ops]
    except OSError as err:
        log.warning("%s: cannot read a batched snapshot (%s); sending the files one by one", oaio_id, err)
        return [None] * len(ops)
    if any(len(f.data) != op.size for f, op in zip(files, ops)):
        return [None] * len(ops)           # a snapshot changed under us: the single path re-checks it
    if len(protocol.plan_batches(files)) != 1:
        return [None] * len(ops)
    doc: dict[str, Any] | None = None
    try:
        compact = getattr(api, "commit_batch_doc", None)      # vfs/compact.py: no whole-object fetch
        if compact is not None:
            results, doc = compact(oaio_id, files)
        else:
            results = api.commit_batch(oaio_id, files)
    except OaioError as err:
        log.info("%s: batch of %d files not committed (%s); sending them one by one", oaio_id, len(ops),
                 err.message)
        return [None] * len(ops)
    outcomes: list[Outcome | None] = []
    ok = [i for i, r in enumerate(results) if r.get("status") == protocol.BATCH_OK]
    if ok and doc is None:
        doc = doc_of(oaio_id)
    for op, result in zip(ops, results):
        if result.get("status") == protocol.BATCH_OK and result.get("path") == op.path:
            COUNTERS.upload_bytes += op.size
            outcomes.append(Outcome("done", doc, int(result["version"])))
        else:
            if result.get("status") != protocol.BATCH_CONFLICT:
                log.info("%s/%s: refused in a batch (%s); sending it on its own", oaio_id, op.path,
                         (result.get("error") or {}).get("message", result.get("status")))
            outcomes.append(None)
    log.debug("%s: batch of %d files committed (%d ok)", oaio_id, len(ops), len(ok))
    return outcomes


def _with_folders(api: Any, ops: Sequence[Op], doc_of: Any) -> list[Outcome | None]:
    """The files of ``ops`` committed as one batch; each ``mkdir`` is done with the first
    committed file inside its folder (the server made the folder for it), else None."""
    files = [op for op in ops if op.kind != "mkdir"]
    done = dict(zip([op.id for op in files], apply_batch(api, files, doc_of)))
    made: dict[str, Outcome] = {}         # folder -> the outcome of the first committed file inside
    for f in files:
        outcome = done[f.id]
        if outcome is not None and outcome.state == "done":
            for folder in protocol.parent_dirs(f.path):
                made.setdefault(folder, outcome)
    outcomes: list[Outcome | None] = []
    for op in ops:
        if op.kind != "mkdir":
            outcomes.append(done[op.id])
        else:
            inside = made.get(op.path)
            outcomes.append(Outcome("done", inside.doc, None) if inside is not None else None)
    return outcomes
