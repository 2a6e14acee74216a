"""Requests from the command line to the running mount, through extended attributes.

``oaiofs share/unshare/access/info/retry/discard/conflicts`` on a path inside a mount talk
to the mount process (which holds the login), so they need no password:

* reading ``user.oaio.id`` / ``user.oaio.info`` / ``user.oaio.access`` answers from the
  namespace (id, info) or from the server (access, cached for :data:`ACCESS_TTL_S`);
* writing ``user.oaio.control`` with a JSON request ``{"op", "nonce", ...}`` runs it in the
  mount; an error fails the ``setxattr`` with the error's errno, and the full result
  (``{"ok": true, ...}`` or ``{"ok": false, "error", "message"}``) can be read once from
  ``user.oaio.result.<nonce>`` (kept for :data:`RESULT_TTL_S`), so the command line can
  print the server's own message.

Ops: ``share {user, right}`` (``x`` removes; a subscriber removing themself leaves the
share), ``retry`` and ``discard {really}`` (failed uploads at or under the path; the root
means all), ``clear_conflicts`` (the conflict records, not the copies), ``versions`` and
``restore_version {version}`` (the version history, :mod:`.history_control`).
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable

import cachetools

from .. import protocol
from ..conflicts import conflict_path
from ..errors import InvalidValue, NotFound, OaioError
from .errors import NoAttribute, NotPermitted
from . import trash_control
from .nodes import Node
from .seams import ServerApi

log = logging.getLogger(__name__)

ACCESS_TTL_S = 2.0        # a getxattr is asked twice (size, then bytes): one server call for both
RESULT_TTL_S = 300.0
MAX_REQUEST_BYTES = 4096
RESCUE_DIR = "rescued"    # <cache>/rescued/<object>/<conflict copy>: bytes kept by `oaiofs discard`


class Control:
    """The mount's side of the command-line requests (see the module doc)."""

    def __init__(self, api: ServerApi, namespace: Any, journal: Any, writeback: Any, cache_dir: Path,
                 file_status: Callable[[str, str, int, float], str], online: Callable[[], bool],
                 origin: str, on_subscription: Callable[[str], None] | None = None, cache: Any = None) -> None:
        self.api = api
        self.cache = cache
        self.ns = namespace
        self.journal = journal
        self.writeback = writeback
        self.cache_dir = Path(cache_dir)
        self.file_status = file_status
        self.online = online
        self.origin = origin
        self.on_subscription = on_subscription or (lambda oaio_id: None)
        self._access: cachetools.TTLCache[str, bytes] = cachetools.TTLCache(maxsize=256, ttl=ACCESS_TTL_S)
        self._results: cachetools.TTLCache[str, bytes] = cachetools.TTLCache(maxsize=1024, ttl=RESULT_TTL_S)
        self._lock = threading.Lock()

    # --- reads ---
    def object_id(self, node: Node) -> bytes:
        if node.view is None:
            raise NoAttribute("the mount root is not an object: it has no user.oaio.id")
        return node.view.oaio_id.encode("utf-8")

    def info(self, node: Node) -> bytes:
        """``oaiofs info``: id, versions, right, owner and sync state of a path."""
        view = node.view
        if view is None:
            raise NotPermitted("the mount root is not an object (oaiofs status describes the mount)")
        ops = [o for o in self.journal.pending(view.oaio_id)
               if not node.path or node.path in (o.path, o.dst) or o.path.startswith(node.path + "/")]
        failed = sum(1 for o in ops if o.state == "failed")
        doc: dict[str, Any] = {
            "oaio_id": view.oaio_id, "name": self.ns.name_of(view.oaio_id), "kind": node.kind,
            "path": node.path, "object_version": view.version, "access_right": view.access_right,
            "owner": view.owner, "created": view.created, "on_server": not view.local,
            "pending_changes": len(ops) - failed, "failed_changes": failed, "online": self.online()}
        if node.kind == "file" and node.entry is not None:
            entry = node.entry
            doc.update(version=entry.version, size=entry.size, sha256=entry.sha256,
                       sync=self.file_status(view.oaio_id, entry.path, entry.version, entry.mtime))
        else:
            doc["version"] = view.version
            doc["sync"] = ("error" if failed else "uploading" if ops or view.local else "synced")
        doc["files"], doc["size"], doc["cached_bytes"] = self._bytes_under(view, node.path)
        return json.dumps(doc, indent=2, default=str).encode("utf-8")

    def _bytes_under(self, view: Any, prefix: str) -> tuple[int, int, int]:
        """(files, bytes, bytes of their current versions in the cache) at or under ``prefix``."""
        files = size = cached = 0
        for path, entry in list(view.entries.items()):
            if entry.kind != "file" or (prefix and path != prefix and not path.startswith(prefix + "/")):
                continue
            files += 1
            size += entry.size
            rec = self.cache.peek((view.oaio_id, path)) if self.cache is not None else None
            if rec and (rec.get("dirty") or rec.get("version") == entry.version):
                cached += min(entry.size, sum(e - s for s, e in rec.get("ranges", ())))
        return files, size, cached

    def access(self, node: Node) -> bytes:
        """Users and rights of the object (from the server), sorted like the seed's ``userz_access``."""
        view = self._on_server(node)
        with self._lock:
            cached = self._access.get(view.oaio_id)
        if cached is None:
            cached = json.dumps(self.api.subscriptions(view.oaio_id)).encode("utf-8")
            with self._lock:
                self._access[view.oaio_id] = cached
        return cached

    def result(self, nonce: str) -> bytes:
        with self._lock:
            found = self._results.get(nonce)     # not popped: a getxattr asks for the size first
        if found is None:
            raise NotFound(f"no result for request {nonce!r}")
        return found

    # --- requests ---
    def request(self, node: Node, value: bytes) -> None:
        """Run the JSON request in ``value``; raises its error (the result is kept either way)."""
        if len(value) > MAX_REQUEST_BYTES:
            raise InvalidValue("control request too large")
        try:
            req = json.loads(value.decode("utf-8"))
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidValue(f"control request is not a JSON object: {exc}") from None
        nonce = str(req.get("nonce") or "")[:64]
        try:
            outcome = self._dispatch(node, req)
            result = {"ok": True, **outcome}
        except OaioError as err:
            result = {"ok": False, "error": err.code, "message": err.message, "detail": err.detail}
            self._keep(nonce, result)
            raise
        self._keep(nonce, result)

    def _keep(self, nonce: str, result: dict[str, Any]) -> None:
        if nonce:
            with self._lock:
                self._results[nonce] = json.dumps(result, default=str).encode("utf-8")

    def _dispatch(self, node: Node, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "share":
            return self._share(node, str(req.get("user") or ""), str(req.get("right") or ""))
        if op == "retry":
            return self._retry(node)
        if op == "discard":
            return self._discard(node, bool(req.get("really")))
        if op == "clear_conflicts":
            return {"cleared": self.journal.clear_conflicts()}
        if op in ("versions", "restore_version"):     # oaiofs versions / restore --version (history_control.py)
            from .history_control import run as history_op
            return history_op(self, node, req)
        if op in trash_control.OPS:           # oaiofs trash / restore (vfs/trash_control.py)
            return trash_control.dispatch(self, node, req)
        raise InvalidValue(f"unknown control op {op!r} (one of {', '.join(protocol.CONTROL_OPS)})")

    def _on_server(self, node: Node) -> Any:
        view = node.view
        if view is None:
            raise NotPermitted("the mount root is not an object: name an object folder or a path in one")
        if view.local:
            raise NotFound(f"{self.ns.name_of(view.oaio_id)!r} is not on the server yet (still uploading)",
                           {"oaio_id": view.oaio_id})
        return view

    def _share(self, node: Node, user: str, right: str) -> dict[str, Any]:
        view = self._on_server(node)
        if right not in (*protocol.ACCESS_RIGHTS, protocol.NO_ACCESS_RIGHT):
            raise InvalidValue(f"right must be r, U, D or x (not {right!r})")
        pid = self.api.set_subscription(view.oaio_id, user, right)
        with self._lock:
            self._access.pop(view.oaio_id, None)
        self.on_subscription(view.oaio_id)
        log.info("%s: %s now has %r", view.oaio_id, user, right)
        return {"oaio_id": view.oaio_id, "username": user, "access_right": right, "pid": pid}

    def _failed_under(self, node: Node) -> list[Any]:
        view = node.view
        ops = self.journal.pending(view.oaio_id if view is not None else None)
        return [o for o in ops if o.state == "failed" and
                (not node.path or node.path in (o.path, o.dst) or o.path.startswith(node.path + "/"))]

    def _retry(self, node: Node) -> dict[str, Any]:
        failed = self._failed_under(node)
        if not failed:
            raise NotFound("no failed change at or under this path", {"path": node.path})
        count = sum(self.journal.retry(o.id) for o in failed)
        return {"retried": count, "paths": [o.path or "values.json" for o in failed]}

    def _discard(self, node: Node, really: bool) -> dict[str, Any]:
        failed = self._failed_under(node)
        if not failed:
            raise NotFound("no failed change at or under this path", {"path": node.path})
        kept: list[str] = []
        for op in failed:
            full = self.journal.failed_op(op.id)
            if full is None:
                continue
            if not really:
                copy = self._rescue(full)
                if copy is not None:
                    kept.append(str(copy))
            if self.journal.discard(op.id):
                self.writeback.on_discarded(full)
        return {"discarded": len(failed), "kept": kept}

    def _rescue(self, op: Any) -> Path | None:
        """Keep the bytes of a discarded op as a conflict copy in ``<cache>/rescued/<object>/``."""
        name: str = self.ns.name_of(op.oaio_id) or op.oaio_id
        folder = self.cache_dir / RESCUE_DIR / name      # a root name: already a safe file name
        if op.kind == "put_file" and op.data_file and os.path.exists(op.data_file):
            target = folder / conflict_path(op.path, self.origin, _now())
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(op.data_file, "rb") as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            return target
        if op.kind in ("put_values", "create_object") and op.values is not None:
            target = folder / conflict_path(protocol.VALUES_FILE, self.origin, _now())
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(op.values, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            return target
        return None


def _now() -> Any:
    import datetime as dt
    return dt.datetime.now(dt.timezone.utc)

