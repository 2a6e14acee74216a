"""Thin HTTP handlers for objects, folders, deletes, moves and subscriptions (see :mod:`oaiofs.protocol`)."""
from __future__ import annotations

from typing import Any, Literal, Sequence
from urllib.parse import unquote

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from sqlalchemy.orm import Session

from .. import protocol
from ..errors import InvalidValue
from . import changes, metadata, objects, subscriptions
from .access import load_object
from .compact_doc import compact_doc
from .entry_index import index_of
from .deps import get_current_user, get_db
from .onehop import OneHopRoute
from .models import User

router = APIRouter(prefix=protocol.API_PREFIX, tags=["objects"], route_class=OneHopRoute)
BaseVersion = Query(None, ge=0, description="the version this change was based on (409 if stale)")
Compact = Query(False, description="answer a CompactDoc (the changed entries) instead of the whole ObjectDoc")


def _answer(obj: Any, right: str, compact: bool, changed: Sequence[Any] = (), removed: Sequence[str] = ()) -> dict:
    """The whole ``ObjectDoc``, or with ``compact`` only what the change touched (cost independent of the object)."""
    if not compact:
        return objects.object_doc(obj, right)
    return compact_doc(obj, right, changed, removed)


class CreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    values: dict[str, Any] = Field(default_factory=dict)
    oaio_id: StrictStr | None = None
    app_id: StrictStr | None = Field(None, max_length=255)
    device_id: StrictStr | None = Field(None, max_length=255)
    stamp: StrictStr | None = None


class PatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    values: dict[str, Any]
    mode: Literal["merge", "replace"] = "merge"
    base_version: StrictInt | None = Field(None, ge=0)


class MoveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    src: StrictStr
    dst: StrictStr
    base_version: StrictInt | None = Field(None, ge=0)
    overwrite: StrictBool = False


class FileMetaBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: StrictInt | None = None
    mtime_ns: StrictInt | None = None
    base_version: StrictInt | None = Field(None, ge=0)


class LinkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: StrictStr
    mtime_ns: StrictInt | None = None
    base_version: StrictInt | None = Field(None, ge=0)


class SubscriptionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    access_right: StrictStr


def _context_header(request: Request, name: str) -> str:
    return unquote(request.headers.get(name, ""))[:255]


@router.get("/objects", response_class=JSONResponse)
def list_objects(user: User = Depends(get_current_user), db: Session = Depends(get_db)) -> JSONResponse:
    """Every visible, non-deleted object with its files and the caller's right, plus the feed cursor."""
    cursor = changes.current_cursor(db)     # first: later changes then reach the client through the feed
    # a JSONResponse skips FastAPI's generic encoder: this document can hold thousands of objects
    return JSONResponse({"objects": objects.list_visible(db, user), "cursor": cursor})


@router.post("/objects", status_code=201)
def create_object(body: CreateBody, request: Request, user: User = Depends(get_current_user),
                  db: Session = Depends(get_db)) -> dict:
    """Register a new object; the server makes a seed-style id when none is given."""
    app_id = body.app_id if body.app_id is not None else _context_header(request, protocol.HEADER_APP)
    device_id = body.device_id if body.device_id is not None else _context_header(request, protocol.HEADER_DEVICE)
    obj = objects.create_object(db, user, body.values, body.oaio_id, app_id=app_id, device_id=device_id,
                                stamp=body.stamp)
    return objects.object_doc(obj, protocol.CREATE_ACCESS_RIGHT)


@router.get("/objects/{oaio_id}", response_class=JSONResponse)
def get_object(oaio_id: str, limit: int | None = Query(None, ge=1, le=protocol.MAX_FILES_PAGE,
                                                       description="page the file list: at most this many"),
               after: str | None = Query(None, max_length=protocol.MAX_PATH_BYTES,
                                         description="the files_next of the previous page"),
               user: User = Depends(get_current_user), db: Session = Depends(get_db)) -> JSONResponse:
    """One object (404 if not visible, 410 if deleted); ``limit``/``after`` page its file list."""
    if after is not None and limit is None:
        raise InvalidValue("after pages the file list: give limit too")
    obj, right = load_object(db, user, oaio_id, "read")
    return JSONResponse(objects.object_doc(obj, right, limit=limit, after=after))


@router.patch("/objects/{oaio_id}")
def patch_object(oaio_id: str, body: PatchBody, user: User = Depends(get_current_user),
                 db: Session = Depends(get_db)) -> dict:
    """Merge into or replace the values (needs C, D or U)."""
    obj, right = load_object(db, user, oaio_id, "update", for_update=True)
    objects.update_values(db, user, obj, body.values, mode=body.mode, base_version=body.base_version)
    return objects.object_doc(obj, right)


@router.delete("/objects/{oaio_id}")
def delete_object(oaio_id: str, base_version: int | None = BaseVersion, user: User = Depends(get_current_user),
                  db: Session = Depends(get_db)) -> dict:
    """Delete the object (tombstone; needs C or D)."""
    obj, right = load_object(db, user, oaio_id, "delete", for_update=True)
    objects.delete_object(db, user, obj, base_version)
    return objects.object_doc(obj, right)


@router.delete("/objects/{oaio_id}/files/{path:path}")
def delete_file(oaio_id: str, path: str, base_version: int | None = BaseVersion, compact: bool = Compact,
                user: User = Depends(get_current_user), db: Session = Depends(get_db)) -> dict:
    """Delete a file, or a folder recursively."""
    obj, right = load_object(db, user, oaio_id, "update", for_update=True)
    removed = objects.delete_path(db, user, obj, path, base_version)
    return _answer(obj, right, compact, removed=removed)


@router.patch("/objects/{oaio_id}/files/{path:path}")
def patch_file(oaio_id: str, path: str, body: FileMetaBody, compact: bool = Compact,
               user: User = Depends(get_current_user), db: Session = Depends(get_db)) -> dict:
    """chmod/utimes: change ``mode`` and/or ``mtime_ns`` of a file, folder or link; no bytes move."""
    obj, right = load_object(db, user, oaio_id, "update", for_update=True)
    entry = metadata.set_file_meta(db, user, obj, path, mode=body.mode, mtime_ns=body.mtime_ns,
                                   base_version=body.base_version)
    return _answer(obj, right, compact, [entry])


@router.put("/objects/{oaio_id}/links/{path:path}")
def put_link(oaio_id: str, path: str, body: LinkBody, compact: bool = Compact,
             user: User = Depends(get_current_user), db: Session = Depends(get_db)) -> dict:
    """Create or replace a symbolic link (its target is stored as given)."""
    obj, right = load_object(db, user, oaio_id, "update", for_update=True)
    entry = metadata.make_link(db, user, obj, path, body.target, mtime_ns=body.mtime_ns,
                               base_version=body.base_version)
    return _answer(obj, right, compact, [entry])


@router.post("/objects/{oaio_id}/dirs/{path:path}", status_code=201)
def make_dir(oaio_id: str, path: str, compact: bool = Compact, user: User = Depends(get_current_user),
             db: Session = Depends(get_db)) -> dict:
    """Create an explicit (possibly empty) folder."""
    obj, right = load_object(db, user, oaio_id, "update", for_update=True)
    entry = objects.make_dir(db, user, obj, path)
    return _answer(obj, right, compact, [entry])


@router.post("/objects/{oaio_id}/move")
def move(oaio_id: str, body: MoveBody, compact: bool = Compact, user: User = Depends(get_current_user),
         db: Session = Depends(get_db)) -> dict:
    """Move/rename a file or folder inside one object."""
    obj, right = load_object(db, user, oaio_id, "update", for_update=True)
    moved = objects.move(db, user, obj, body.src, body.dst, base_version=body.base_version,
                         overwrite=body.overwrite)
    if not compact:
        return objects.object_doc(obj, right)
    dst = protocol.normalize_file_path(body.dst)
    src = protocol.normalize_file_path(body.src)
    index = index_of(obj)
    entries = index.subtree(dst) if len(moved) > 1 or index[dst].kind == objects.DIR else [index[dst]]
    return _answer(obj, right, compact, entries, [src + p[len(dst):] for p in moved])


@router.get("/objects/{oaio_id}/subscriptions", tags=["subscriptions"])
def list_subscriptions(oaio_id: str, user: User = Depends(get_current_user), db: Session = Depends(get_db)) -> dict:
    """The users and rights of an object (any subscriber may look)."""
    return {"subscriptions": subscriptions.list_subscriptions(db, user, oaio_id)}


@router.put("/objects/{oaio_id}/subscriptions/{username}", tags=["subscriptions"])
def put_subscription(oaio_id: str, username: str, body: SubscriptionBody = Body(...),
                     user: User = Depends(get_current_user), db: Session = Depends(get_db)) -> dict:
    """Grant/change a right (creator only) or remove a subscription with ``x``."""
    return subscriptions.set_subscription(db, user, oaio_id, username, body.access_right)
