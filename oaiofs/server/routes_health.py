"""``GET /healthz`` (no auth): 200 when the database answers and the blob store takes a write, else 503.

Body: ``{"status": "ok"|"failing", "checks": {"database": {"ok", "error"?}, "blobs": {...}}}``; a 503
also carries the error shape (``error: "unavailable"``, a message naming the failing parts).
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

log = logging.getLogger(__name__)
router = APIRouter()
CHECK_TIMEOUT_S = 10.0


def check_database(state: Any) -> None:
    """A read of a real table (``SELECT 1`` would pass on a connection to a file that is gone)."""
    with state.engine.connect() as conn:
        conn.execute(text("SELECT count(*) FROM alembic_version")).scalar()


def check_blobs(state: Any) -> None:
    """Write, then remove, a few bytes in the blob store's staging area."""
    if state.blobs is None:
        raise RuntimeError("no blob store configured")
    probe = "healthz-" + secrets.token_hex(8)
    staging = state.blobs.staging_create(probe)
    try:
        staging = state.blobs.staging_write(probe, 0, b"oaiofs health probe", staging) or staging
    finally:
        state.blobs.staging_delete(probe, staging)


async def _run(check: Any, state: Any) -> dict[str, Any]:
    try:
        await asyncio.wait_for(asyncio.to_thread(check, state), CHECK_TIMEOUT_S)
    except asyncio.TimeoutError:
        return {"ok": False, "error": f"no answer within {CHECK_TIMEOUT_S:.0f}s"}
    except Exception as exc:  # noqa: BLE001 - every failure is the answer
        log.warning("health check %s failed: %s", check.__name__, exc)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return {"ok": False, "error": f"{type(exc).__name__}: {reason[0] if reason else ''}"[:300]}
    return {"ok": True}


@router.get("/healthz", include_in_schema=False)
async def healthz(request: Request) -> JSONResponse:
    state = request.app.state.oaiofs
    database, blobs = await asyncio.gather(_run(check_database, state), _run(check_blobs, state))
    checks = {"database": database, "blobs": blobs}
    failing = [name for name, result in checks.items() if not result["ok"]]
    if not failing:
        return JSONResponse({"status": "ok", "checks": checks})
    body = {"status": "failing", "checks": checks, "error": "unavailable",
            "message": f"failing: {', '.join(failing)}", "detail": {"failing": failing}}
    return JSONResponse(body, status_code=503)
