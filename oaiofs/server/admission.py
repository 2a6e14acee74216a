"""Admission control: at most N requests hold database work at once; the rest queue, briefly.

Why: a request takes a database connection in one worker thread (authentication),
keeps it while waiting for the next thread (the handler) and commits in yet another
one (:class:`~oaiofs.server.deps.CommitBeforeResponse`). With more requests in
flight than connections, threads blocked on the pool can take every worker thread
while the requests that hold connections wait for a thread to release them: the
server stalls until the pool timeout and answers 500. So:

* :class:`Admission` lets at most ``slots`` API requests run at once (one slot =
  the right to use the database); it is an ``asyncio`` semaphore, so queued
  requests wait without holding a thread or a connection;
* the connection pool holds at least ``2 * slots`` connections and the worker thread
  pool at least ``slots + THREAD_HEADROOM`` threads (:func:`size_thread_pool`),
  so an admitted request never waits for either;
* a slot is released when the response starts (its transaction is committed by
  then), so a slow download does not keep one; a long-poll hands its slot back
  while it waits (:func:`release_slot`);
* at most ``queue`` requests wait, each for at most ``wait_s``: beyond that the
  answer is 503 ``unavailable`` with ``Retry-After`` (and the JSON error body), at
  once, instead of a timeout.

Lock order: the slot is taken before any connection and before any worker thread.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from fastapi.responses import JSONResponse

from .. import protocol

log = logging.getLogger(__name__)

THREAD_HEADROOM = 16            # worker threads beyond the slots (purges, long-poll fetches, streaming)
SCOPE_KEY = "oaiofs.admission"  # request.scope entry: the release function of this request's slot
EXEMPT_PATHS = frozenset({protocol.PATH_STAMP})   # no database: never queued (readiness probe)


class Admission:
    """A bounded set of slots with a bounded, time-limited queue in front of it."""

    def __init__(self, slots: int, queue: int, wait_s: float, retry_after_s: int = 1) -> None:
        self.slots, self.queue, self.wait_s, self.retry_after_s = max(1, slots), max(0, queue), wait_s, retry_after_s
        self._sem: asyncio.Semaphore | None = None
        self.waiting = 0
        self.refused = 0

    def _semaphore(self) -> asyncio.Semaphore:
        if self._sem is None:         # created in the server's event loop
            self._sem = asyncio.Semaphore(self.slots)
        return self._sem

    async def acquire(self) -> bool:
        """Take a slot (waiting in the queue if needed); False if saturated."""
        sem = self._semaphore()
        if not sem.locked():
            await sem.acquire()
            return True
        if self.waiting >= self.queue:
            return False
        self.waiting += 1
        try:
            await asyncio.wait_for(sem.acquire(), timeout=self.wait_s)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self.waiting -= 1

    def release(self) -> None:
        self._semaphore().release()

    def busy_response(self) -> JSONResponse:
        """503 ``unavailable`` with ``Retry-After``."""
        self.refused += 1
        if self.refused == 1 or self.refused % 100 == 0:
            log.warning("server saturated: %d requests refused with 503 so far (slots %d, queue %d)",
                        self.refused, self.slots, self.queue)
        body = {"error": "unavailable", "message": "the server is busy; try again shortly",
                "detail": {"retry_after": self.retry_after_s}}
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(self.retry_after_s)})


class AdmissionMiddleware:
    """ASGI middleware putting every API request (but ``/stamp``) through :class:`Admission`."""

    def __init__(self, app: Any, admission: Admission) -> None:
        self.app, self.admission = app, admission

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if (scope["type"] != "http" or not scope["path"].startswith(protocol.API_PREFIX)
                or scope["path"] in EXEMPT_PATHS):
            await self.app(scope, receive, send)
            return
        if not await self.admission.acquire():
            await self.admission.busy_response()(scope, receive, send)
            return
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self.admission.release()

        scope[SCOPE_KEY] = release

        async def send_releasing(message: dict) -> None:
            if message["type"] == "http.response.start":
                release()        # committed by now (CommitBeforeResponse runs inside this middleware)
            await send(message)

        try:
            await self.app(scope, receive, send_releasing)
        finally:
            release()


def release_slot(scope: dict) -> None:
    """Give this request's slot back early (it holds no connection and will wait a while)."""
    release = scope.get(SCOPE_KEY)
    if release is not None:
        release()


async def run_in_slot(admission: Admission | None, func: Callable[[], Any]) -> Any:
    """Run blocking database work ``func`` in a worker thread under a slot (waits; never refuses)."""
    from starlette.concurrency import run_in_threadpool
    if admission is None:
        return await run_in_threadpool(func)
    sem = admission._semaphore()
    async with sem:
        return await run_in_threadpool(func)


def size_thread_pool(slots: int) -> None:
    """Give the worker thread pool room for every slot plus headroom (call inside the event loop)."""
    import anyio.to_thread
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = max(limiter.total_tokens, slots + THREAD_HEADROOM)
