"""Thin HTTP handlers of the version history (:mod:`oaiofs.server.history`; restores: ``history_restore``).

Reading the history needs any right (``r``); restoring needs ``U``, ``D`` or ``C`` (like a
PUT). A restore is a new version, checked against ``base_version`` like a PUT, and reaches
every subscriber through the change feed.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from .. import protocol
from . import deps, history, history_restore, objects
from .access import load_object
from .byteranges import blob_response
from .deps import get_current_user, get_db
from .models import User
from .state import transaction

router = APIRouter(prefix=protocol.API_PREFIX, tags=["history"])
RestoreBase = Query(None, ge=0, le=history.MAX_VERSION,
                    description="the file's (values: the object's) current version, as for a PUT (409 if stale; "
                                "0: the file must not exist)")


@router.get("/objects/{oaio_id}/history/versions/{path:path}")
def list_file_versions(oaio_id: str, path: str, user: User = Depends(get_current_user),
                       db: Session = Depends(get_db)) -> dict:
    """The kept versions of a file, newest first (needs any right)."""
    obj, _right = load_object(db, user, oaio_id, "read")
    return history.file_versions(db, obj, path)


def _version_info(state: Any, request: Request, oaio_id: str, version: str, path: str) -> dict[str, Any]:
    with transaction(state) as db:
        user = deps.get_current_user(request, db)
        number = history.parse_version(version)
        obj, _right = load_object(db, user, oaio_id, "read")
        row = history.file_version(db, obj, path, number)
        return {"sha256": row.sha256, "version": row.version, "mtime": row.mtime_ns / 1e9,
                "blob_key": row.blob_key, "size": row.size}


@router.api_route("/objects/{oaio_id}/history/files/{version}/{path:path}", methods=["GET", "HEAD"],
                  response_class=Response)
async def get_file_version(oaio_id: str, version: str, path: str, request: Request) -> Response:
    """The bytes of a kept version (``Range`` answers 206, like the file itself)."""
    state = request.app.state.oaiofs
    info = await run_in_threadpool(_version_info, state, request, oaio_id, version, path)
    return blob_response(request, state.blobs, info)


@router.post("/objects/{oaio_id}/history/restore/{version}/{path:path}")
def restore_file_version(oaio_id: str, version: str, path: str, request: Request,
                         base_version: int | None = RestoreBase, user: User = Depends(get_current_user),
                         db: Session = Depends(get_db)) -> dict:
    """Commit a kept version's bytes again as a new version of the file (needs U, D or C)."""
    number = history.parse_version(version)
    obj, _right = load_object(db, user, oaio_id, "update", for_update=True)
    entry, row = history_restore.restore_file(db, user, obj, path, number, base_version=base_version,
                                              blobs=request.app.state.oaiofs.blobs)
    return dict(objects.file_doc(entry), restored_from=row.restored_from, object_version=obj.version)


@router.get("/objects/{oaio_id}/history/values")
def list_values_versions(oaio_id: str, user: User = Depends(get_current_user), db: Session = Depends(get_db)) -> dict:
    """The kept values versions of an object, newest first (needs any right)."""
    obj, _right = load_object(db, user, oaio_id, "read")
    return history.values_versions(db, obj)


@router.get("/objects/{oaio_id}/history/values/{version}")
def get_values_version(oaio_id: str, version: str, user: User = Depends(get_current_user),
                       db: Session = Depends(get_db)) -> dict:
    """One kept values version, with its values (needs any right)."""
    number = history.parse_version(version)
    obj, _right = load_object(db, user, oaio_id, "read")
    return history.values_version_doc(db, obj, number)


@router.post("/objects/{oaio_id}/history/values/{version}/restore")
def restore_values_version(oaio_id: str, version: str, base_version: int | None = RestoreBase,
                           user: User = Depends(get_current_user), db: Session = Depends(get_db)) -> dict:
    """Set a kept version's values again (replace) as a new object version (needs U, D or C)."""
    number = history.parse_version(version)
    obj, right = load_object(db, user, oaio_id, "update", for_update=True)
    history_restore.restore_values(db, user, obj, number, base_version=base_version)
    return objects.object_doc(obj, right)
