"""Client calls of the server trash (``/trash``, ``/objects/{id}/trash``; docs/api.md)."""
from __future__ import annotations

from typing import Any

from .. import protocol
from .api import ApiClient, quote_id

PATH_TRASH = protocol.API_PREFIX + "/trash"
PATH_OBJECT_TRASH = protocol.PATH_OBJECT + "/trash"
PATH_RESTORE = PATH_OBJECT_TRASH + "/restore"


def list_trash(api: ApiClient, oaio_id: str | None = None) -> dict[str, Any]:
    """``{"items": [TrashItem], "retention_s"}`` of one object or of every object the user is subscribed to."""
    path = PATH_TRASH if oaio_id is None else PATH_OBJECT_TRASH.format(oaio_id=quote_id(oaio_id))
    listing: dict[str, Any] = api.request("GET", path).json()
    return listing


def empty_trash(api: ApiClient, oaio_id: str | None = None) -> int:
    """Empty the trash of one object (creator only) or of every object the user created; items removed."""
    path = PATH_TRASH if oaio_id is None else PATH_OBJECT_TRASH.format(oaio_id=quote_id(oaio_id))
    return int(api.request("DELETE", path).json()["removed"])


def restore(api: ApiClient, oaio_id: str, path: str | None = None, item_id: int | None = None) -> dict[str, Any]:
    """Restore a deleted path (or trash item) of ``oaio_id``, or with neither the deleted object itself.

    Returns ``{"oaio_id", "path", "restored_as", "paths", "object": ObjectDoc}``.
    """
    body: dict[str, Any] = {}
    if path is not None:
        body["path"] = path
    if item_id is not None:
        body["id"] = item_id
    result: dict[str, Any] = api.request("POST", PATH_RESTORE.format(oaio_id=quote_id(oaio_id)), json=body).json()
    return result
