"""The change feed endpoint: returns at once when there are changes, else long-polls."""
from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from .. import protocol
from . import changes, changes_pacifica
from .admission import release_slot, run_in_slot
from .deps import get_current_user, get_db
from .state import get_state
from .models import User

router = APIRouter(prefix=protocol.API_PREFIX, tags=["changes"])
MAX_LIMIT = 5000


@router.get("/changes")
async def get_changes(request: Request, cursor: int = Query(0, ge=0),
                      wait: float = Query(0.0, ge=0.0, le=protocol.MAX_CHANGES_WAIT_S),
                      limit: int = Query(500, ge=1, le=MAX_LIMIT),
                      format: str = Query("cloudevents", pattern="^(cloudevents|pacifica)$"),
                      user: User = Depends(get_current_user), db: Session = Depends(get_db)) -> dict:
    """CloudEvents for the caller after ``cursor``; waits up to ``wait`` seconds for the first one."""
    await run_in_threadpool(db.commit)      # end the auth transaction: no connection held while waiting
    release_slot(request.scope)  # type: ignore[arg-type]  # nor an admission slot: each fetch takes one again
    state = get_state(request)
    user_id = user.id

    def fetch() -> tuple[list[dict], int]:
        with state.sessionmaker() as session:
            events, next_cursor = changes.fetch(session, user_id, cursor, limit)
            if format == "pacifica":       # data: the Files records pacifica-downloader's cloudevent() reads
                events = changes_pacifica.to_pacifica(session, user_id, events)
            return events, next_cursor

    deadline = time.monotonic() + wait
    while True:
        with state.notifier.listen() as woken:
            events, next_cursor = await run_in_slot(state.admission, fetch)
            remaining = deadline - time.monotonic()
            if events or remaining <= 0 or state.closing or await request.is_disconnected():
                return {"cursor": next_cursor, "events": events}
            try:
                await asyncio.wait_for(woken.wait(), timeout=min(changes.POLL_INTERVAL_S, remaining))
            except asyncio.TimeoutError:
                pass
