"""``POST PATH_BATCH``: the HTTP side of a batch commit (:mod:`oaiofs.server.batch_commit` holds the rules).

The tar body is spooled (at most ``protocol.BATCH_MAX_BYTES``; more answers 413, a cut
connection 400 with nothing applied), then parsed and committed in worker threads.
"""
from __future__ import annotations

import tempfile
from typing import IO, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from .. import protocol
from ..errors import InvalidInput, TooLarge
from .batch_commit import SPOOL_IN_MEMORY, check_access, commit_items, parse_batch
from .deps import authenticate
from .state import transfer_state

router = APIRouter(tags=["files"])


async def spool_body(request: Request) -> IO[bytes]:
    """The request body in a spooled temporary file (413 past ``BATCH_MAX_BYTES``)."""
    limit = protocol.BATCH_MAX_BYTES
    declared = request.headers.get("content-length")
    too_large = bool(declared and declared.isascii() and declared.isdigit() and int(declared) > limit)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
    received = 0
    try:
        async for piece in request.stream():
            received += len(piece)
            if received > limit:
                too_large = True
            if too_large:
                if received > 2 * limit:         # read a moderate excess so the client sees the 413
                    break
                continue
            spool.write(piece)
    except ClientDisconnect:
        spool.close()
        raise InvalidInput("the connection was cut before the batch body ended; nothing was applied") from None
    except BaseException:
        spool.close()
        raise
    if too_large:
        spool.close()
        raise TooLarge(f"a batch body holds at most {limit} bytes", {"limit": limit})
    spool.seek(0)
    return spool


@router.post(protocol.PATH_BATCH)
async def commit_batch(oaio_id: str, request: Request,
                       compact: bool = Query(False, description="also answer a CompactDoc of the batch")
                       ) -> dict[str, Any]:
    """Commit many small files of one object in one transaction (tar body; see ``BATCH_*`` in the protocol)."""
    state = transfer_state(request)
    user_id = await run_in_threadpool(authenticate, request)
    await run_in_threadpool(check_access, state, user_id, oaio_id)
    spool = await spool_body(request)
    try:
        items = await run_in_threadpool(parse_batch, spool)
    finally:
        spool.close()
    return await run_in_threadpool(commit_items, state, user_id, oaio_id, items, compact)
