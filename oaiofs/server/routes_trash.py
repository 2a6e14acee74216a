"""Thin HTTP handlers for the trash (:mod:`oaiofs.server.trash`, ``trash_restore``): list, restore, empty."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from sqlalchemy.orm import Session

from .. import protocol
from . import objects, trash, trash_restore
from .access import load_object, user_right
from .deps import get_current_user, get_db
from .state import get_state
from .models import User

router = APIRouter(prefix=protocol.API_PREFIX, tags=["trash"])


class RestoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: StrictStr | None = None
    id: StrictInt | None = Field(default=None, ge=1, le=2 ** 62)


def _settings(request: Request) -> Any:
    return get_state(request).settings


@router.get("/trash")
def list_trash(request: Request, user: User = Depends(get_current_user), db: Session = Depends(get_db)) -> dict:
    """What was deleted in every object the caller is subscribed to (deleted objects included); newest first."""
    settings = _settings(request)
    return {"items": trash.list_items(db, user, settings), "retention_s": settings.trash_retention_s}


@router.delete("/trash")
def empty_trash(user: User = Depends(get_current_user), db: Session = Depends(get_db)) -> dict:
    """Empty the trash of every object the caller created (for good)."""
    return {"removed": trash.empty(db, user)}


@router.get("/objects/{oaio_id}/trash")
def list_object_trash(oaio_id: str, request: Request, user: User = Depends(get_current_user),
                      db: Session = Depends(get_db)) -> dict:
    """What was deleted in one object (any subscriber; also of a deleted object)."""
    settings = _settings(request)
    return {"items": trash.list_items(db, user, settings, oaio_id), "retention_s": settings.trash_retention_s}


@router.delete("/objects/{oaio_id}/trash")
def empty_object_trash(oaio_id: str, user: User = Depends(get_current_user), db: Session = Depends(get_db)) -> dict:
    """Empty one object's trash (creator only); a deleted object then cannot be restored any more."""
    return {"removed": trash.empty(db, user, oaio_id)}


@router.post("/objects/{oaio_id}/trash/restore")
def restore(oaio_id: str, request: Request, body: RestoreBody = Body(default_factory=RestoreBody),
            user: User = Depends(get_current_user), db: Session = Depends(get_db)) -> dict:
    """Restore a deleted path (``path`` and/or trash item ``id``; C/D/U) or, with neither, the object (C/D)."""
    settings = _settings(request)
    if body.path is None and body.id is None:
        obj = trash_restore.restore_object(db, user, oaio_id, settings)
        right = user_right(db, user, obj) or ""
        return {"oaio_id": oaio_id, "path": "", "restored_as": "", "paths": [],
                "object": objects.object_doc(obj, right)}
    obj, right = load_object(db, user, oaio_id, "update", for_update=True)
    result = trash_restore.restore_path(db, user, obj, settings, body.path, body.id)
    return {**result, "object": objects.object_doc(obj, right)}
