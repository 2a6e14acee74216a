"""The mount's side of ``oaiofs versions`` and ``oaiofs restore --version`` (ops of :mod:`.control`).

``versions`` lists the kept versions of a file (or of the object's values for
``values.json``) from the server; ``restore_version {version}`` restores one as a new
version, based on the version this mount shows (a newer one on the server: 409, like a
PUT). A file with local changes not yet uploaded is refused (EBUSY) rather than raced.
After the restore the object's document is fetched at once, so this mount shows the
restored bytes (the cached bytes belong to the older version and are not served); other
mounts get it through the change feed.
"""
from __future__ import annotations

import logging
from typing import Any

from .. import protocol
from ..client import history
from ..errors import Conflict, InvalidValue, OaioError
from .errors import NotPermitted
from .nodes import Node

log = logging.getLogger(__name__)

MAX_LISTED = 150           # versions answered through the xattr channel (its values are at most 64 KiB)


def run(control: Any, node: Node, req: dict[str, Any]) -> dict[str, Any]:
    """Dispatch ``versions`` / ``restore_version`` for ``node``."""
    view = control._on_server(node)
    if node.kind not in ("file", "values") or (node.entry is not None and node.entry.kind != "file"):
        raise NotPermitted(f"versions are kept for files and {protocol.VALUES_FILE}, not for a {node.kind}",
                           {"kind": node.kind})
    if req.get("op") == "versions":
        return _versions(control, node, view.oaio_id)
    return _restore(control, node, view, _version(req.get("version")))


def _version(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise InvalidValue("version must be a non-negative integer", {"version": str(raw)[:40]})
    return protocol.parse_ascii_int(str(raw), "version", InvalidValue)


def _versions(control: Any, node: Node, oaio_id: str) -> dict[str, Any]:
    if node.kind == "values":
        doc = history.values_versions(control.api, oaio_id)
    else:
        doc = history.file_versions(control.api, oaio_id, node.path)
    versions = doc.get("versions", [])
    doc["versions"] = versions[:MAX_LISTED]
    doc["truncated"] = len(versions) > MAX_LISTED
    return doc


def _restore(control: Any, node: Node, view: Any, version: int) -> dict[str, Any]:
    path = node.path if node.kind == "file" else ""
    busy = [o for o in control.journal.pending(view.oaio_id) if o.state != "failed" and
            ((node.kind == "values" and o.kind in ("put_values", "create_object")) or
             (node.kind == "file" and path in (o.path, o.dst)))]
    if busy or (node.entry is not None and node.entry.local):
        raise Conflict(f"{node.path!r} has local changes not uploaded yet; wait for them (oaiofs status) "
                       "and try again", {"path": node.path})
    if node.kind == "values":
        doc = history.restore_values(control.api, view.oaio_id, version, base_version=view.version)
        result = {"oaio_id": view.oaio_id, "path": protocol.VALUES_FILE, "restored_from": version,
                  "version": doc.get("version")}
    else:
        base = node.entry.version if node.entry is not None else None
        doc = history.restore_file(control.api, view.oaio_id, path, version, base_version=base)
        result = {"oaio_id": view.oaio_id, "path": path, "restored_from": version, "version": doc.get("version"),
                  "sha256": doc.get("sha256"), "size": doc.get("size")}
    try:                              # show it here at once; the change feed brings it everywhere else
        control.ns.put_doc(control.api.get_object(view.oaio_id))
    except OaioError as exc:
        log.warning("restored %s of %s; refreshing the listing failed (%s): the change feed brings it",
                    path or protocol.VALUES_FILE, view.oaio_id, exc.message)
        control.on_subscription(view.oaio_id)
    log.info("%s: restored %s to version %d as version %s", view.oaio_id, path or protocol.VALUES_FILE, version,
             result["version"])
    return result
