"""The mount's side of ``oaiofs trash`` / ``oaiofs restore`` (control ops, see :mod:`oaiofs.vfs.control`).

Ops (the node is the path the request was written on: the nearest existing folder of the
path the user named; ``rest`` is what is left of that path, e.g. a deleted file's name):

* ``trash {offset, limit}`` — the trash of the node's object (items at or under its path),
  or of the whole drive on the mount root; one page per request (an xattr holds 64 KiB),
  with ``total``; every item carries ``folder``, its object's folder name in this mount;
* ``restore {rest}`` — restore ``<node path>/<rest>`` from the trash (the server puts it
  beside a name that exists again); on the mount root ``rest`` names a deleted object's
  folder, which comes back whole with its subscriptions. The restored object document is
  applied to the namespace at once (the change feed brings it to other mounts);
* ``empty_trash`` — the node's object's trash, or on the root every object this user created.
"""
from __future__ import annotations

import logging
from typing import Any

from .. import protocol
from ..client import trash_api
from ..errors import InvalidValue, NotFound
from .nodes import Node, collision_suffix, safe_name

log = logging.getLogger(__name__)

OPS = ("trash", "restore", "empty_trash")
PAGE_MAX = 100


def dispatch(control: Any, node: Node, req: dict[str, Any]) -> dict[str, Any]:
    """Run one trash op for :class:`oaiofs.vfs.control.Control`."""
    op = req.get("op")
    if op == "trash":
        return _list(control, node, _int(req.get("offset"), 0), min(_int(req.get("limit"), PAGE_MAX), PAGE_MAX))
    if op == "restore":
        return _restore(control, node, str(req.get("rest") or ""))
    view = control._on_server(node) if node.view is not None else None
    removed = trash_api.empty_trash(control.api, view.oaio_id if view is not None else None)
    return {"removed": removed}


def _int(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def folder_names(item: dict[str, Any]) -> list[str]:
    """Names a deleted object's folder may have had in a mount (see ``nodes.base_dir_name``)."""
    oaio_id = item["oaio_id"]
    name = item.get("name")
    base = safe_name(name if isinstance(name, str) and name.strip() else oaio_id)
    return [base, base + collision_suffix(oaio_id), safe_name(oaio_id)]


def _folder(control: Any, item: dict[str, Any]) -> str:
    name: str | None = control.ns.name_of(item["oaio_id"])
    return name or folder_names(item)[0]


def _list(control: Any, node: Node, offset: int, limit: int) -> dict[str, Any]:
    if node.view is None:
        listing = trash_api.list_trash(control.api)
        items = listing["items"]
    else:
        view = control._on_server(node)
        listing = trash_api.list_trash(control.api, view.oaio_id)
        prefix = node.path
        items = [i for i in listing["items"] if not prefix or i["path"] == prefix
                 or i["path"].startswith(prefix + "/") or (i["path"] and prefix.startswith(i["path"] + "/"))]
    page = [dict(i, folder=_folder(control, i)) for i in items[offset:offset + limit]]
    return {"items": page, "total": len(items), "offset": offset, "retention_s": listing.get("retention_s")}


def _restore(control: Any, node: Node, rest: str) -> dict[str, Any]:
    rest = rest.strip("/")
    if node.view is None:                              # a deleted object's folder, named at the root
        if not rest:
            raise InvalidValue("name a deleted path or object folder to restore")
        name, _sep, inner = rest.partition("/")
        if inner:
            raise NotFound(f"{name!r} is not an object folder of this mount; if it is a deleted object, "
                           f"restore the folder {name!r} first", {"path": rest})
        items = [i for i in trash_api.list_trash(control.api)["items"]
                 if i["kind"] == "object" and name in folder_names(i)]
        if not items:
            raise NotFound(f"no deleted object {name!r} in the trash", {"path": rest})
        item = items[0]                                # newest first
        result = trash_api.restore(control.api, item["oaio_id"])
        control.ns.put_doc(result["object"])
        log.info("restored object %s from the trash", item["oaio_id"])
        return {"oaio_id": item["oaio_id"], "kind": "object", "restored_as": control.ns.name_of(item["oaio_id"])}
    view = control._on_server(node)
    path = "/".join(p for p in (node.path, rest) if p)
    if not path:
        raise InvalidValue("the object folder exists: name a deleted path in it (or its folder, if the object "
                           "was deleted)")
    path = protocol.normalize_file_path(path)
    result = trash_api.restore(control.api, view.oaio_id, path)
    control.ns.put_doc(result["object"])
    log.info("restored %r of %s from the trash as %r", path, view.oaio_id, result["restored_as"])
    return {"oaio_id": view.oaio_id, "kind": "path", "path": path, "restored_as": result["restored_as"],
            "folder": control.ns.name_of(view.oaio_id), "paths": len(result.get("paths", []))}
