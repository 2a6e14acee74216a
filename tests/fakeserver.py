"""The one in-memory stand-in for the server, for unit tests of one layer (client sync, journal, VFS).

Integration tests use the real server. Seen through the client library's shapes: :class:`FakeApi`
(``ApiClient``: objects, values, files, folders, moves, metadata, subscriptions, the change feed),
:class:`BatchingFakeApi` (with ``commit_batch``; the journal batches only when the API has it),
:class:`FakeUploader` (``TusUploader``: chunked, resumable, persisted URL) and
:class:`FakeDownloader` (``CartDownloader``). It keeps the protocol's rules the layers rely on:

- every change bumps the object version by one; a file's version is the object version it was
  written at; a stale ``base_version`` raises ``VersionConflict`` (409), ``base_version=0`` means
  "must not exist";
- rights: strangers get 404, a right too small 403 (``oaiofs.protocol.can_update/can_delete``);
  a deleted object answers 410;
- each change is an event for the object's subscribers (``changes`` with a cursor).

Fault injection (each call is recorded in ``calls`` as ``(name, oaio_id, path)`` first):

- ``online = False``: the connection is cut, every call raises ``Unavailable`` until it is back;
- ``fail_next(*errors)``: the next calls raise these errors, in order (any ``OaioError``: a 5xx
  with ``http_error(503)``, a 409 with ``VersionConflict``, ...);
- ``fail_call(n, error)``: the n-th call from now (1 = the next one) raises ``error``;
- ``forbidden``: object ids whose writes answer 403;
- ``on_call``: a hook called with each call's name before anything else (to cut an upload
  after some chunks, or to hold a call).
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from oaiofs.errors import (AlreadyExists, ChecksumMismatch, Forbidden, Gone, NotFound, OaioError, Unavailable,
                           VersionConflict, error_from_response)
from oaiofs.protocol import can_delete, can_update, now_stamp, parent_dirs, split_cart_file_id


def http_error(status: int, message: str = "injected") -> OaioError:
    """The client library's error for an HTTP ``status`` (e.g. 500, 503, 507), for ``fail_next``."""
    return error_from_response(status, {"message": message})


class FakeServer:
    """The stored state: ``objects[oaio_id]`` holds ``values``, ``version``, ``stamp``, ``owner``,
    ``deleted`` (None or a stamp), ``subs`` (username -> right) and ``files`` (path -> entry; file
    entries keep their bytes under ``data``)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.users: list[str] = []
        self.events: list[tuple[str, set[str]]] = []     # (oaio_id, recipients); index + 1 = cursor
        self.listings = 0
        self.calls: list[tuple[str, str, str]] = []
        self.online = True
        self.failures: list[OaioError] = []
        self.scheduled: dict[int, OaioError] = {}          # call number -> error (fail_call)
        self.forbidden: set[str] = set()
        self.on_call: Callable[[str], None] | None = None
        self.lock = threading.RLock()

    # --- fault injection -------------------------------------------------------------------
    def fail_next(self, *errors: OaioError) -> None:
        self.failures.extend(errors)

    def fail_call(self, n: int, error: OaioError) -> None:
        self.scheduled[len(self.calls) + n] = error

    def _enter(self, name: str, oaio_id: str, path: str = "", write: bool = True) -> dict[str, Any] | None:
        """Record a call, apply the injected faults; the object (None if there is none)."""
        if self.on_call:
            self.on_call(name)
        with self.lock:
            self.calls.append((name, oaio_id, path))
            scheduled = self.scheduled.pop(len(self.calls), None)
            if scheduled is not None:
                raise scheduled
            if not self.online:
                raise Unavailable("server 127.0.0.1 is unreachable (ConnectionError)")
            if self.failures:
                raise self.failures.pop(0)
            obj = self.objects.get(oaio_id)
            if obj is not None and write and oaio_id in self.forbidden:
                raise Forbidden("no update right")
            if obj is not None and obj["deleted"]:
                raise Gone(f"object {oaio_id!r} was deleted")
            return obj

    # --- the stored state -------------------------------------------------------------------
    @property
    def blobs(self) -> dict[tuple[str, str], bytes]:
        """``(oaio_id, path) -> bytes`` of every stored file."""
        return {(oid, path): f["data"] for oid, obj in self.objects.items()
                for path, f in obj["files"].items() if f["kind"] == "file"}

    def emit(self, oaio_id: str, extra: str | None = None) -> None:
        recipients = set(self.objects[oaio_id]["subs"]) | ({extra} if extra else set())
        self.events.append((oaio_id, recipients))

    def bump(self, oaio_id: str) -> int:
        obj = self.objects[oaio_id]
        obj["version"] += 1
        obj["stamp"] = now_stamp()
        self.emit(oaio_id)
        return int(obj["version"])

    def check_file_base(self, obj: dict[str, Any], path: str, base: int | None) -> None:
        if base is None:
            return
        current = obj["files"].get(path)
        if (current["version"] if current else 0) != base:
            raise VersionConflict("stale", {"current_version": current["version"] if current else 0})

    def commit(self, oaio_id: str, path: str, data: bytes, base: int | None, *, mode: int | None = None,
               mtime_ns: int | None = None) -> dict[str, Any]:
        """Store ``data`` at ``path`` as a new version (what every write path ends in)."""
        obj = self.objects.get(oaio_id)
        if obj is None:
            raise NotFound("no object")
        if oaio_id in self.forbidden:
            raise Forbidden("no update right")
        self.check_file_base(obj, path, base)
        version = self.bump(oaio_id)
        entry = {"path": path, "kind": "file", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                 "version": version, "stamp": obj["stamp"], "mtime": (mtime_ns or 0) / 1e9,
                 "mode": 0o644 if mode is None else mode, "mtime_ns": mtime_ns or 0, "data": data}
        obj["files"][path] = entry
        return {k: v for k, v in entry.items() if k != "data"}

    def make_parents(self, oaio_id: str, path: str, version: int) -> None:
        """The folders of ``path`` the object lacks, made as the real server makes them for a
        committed file (at the file's version)."""
        files = self.objects[oaio_id]["files"]
        for parent in parent_dirs(path):
            if parent not in files:
                files[parent] = {"path": parent, "kind": "dir", "size": 0, "sha256": None, "version": version,
                                 "stamp": "", "mtime": 0.0}

    def doc(self, oaio_id: str, username: str | None = None) -> dict[str, Any]:
        """The object document as the server answers it (to ``username``: their access right)."""
        obj = self.objects[oaio_id]
        doc = {k: v for k, v in obj.items() if k not in ("files", "subs")}
        doc["values"] = dict(obj["values"])
        doc["files"] = [{k: v for k, v in f.items() if k != "data"} | {"path": p} for p, f in sorted(obj["files"].items())]
        doc.setdefault("access_right", obj["subs"].get(username or obj["owner"], "x"))
        doc.setdefault("app_id", "")
        doc.setdefault("device_id", "")
        return doc


class FakeApi:
    """The subset of ``ApiClient`` the drive's journal, ``Synchronizer`` and ``OaioClient`` call."""

    def __init__(self, server: FakeServer, username: str = "me") -> None:
        self.s = self.server = server
        self.username = username
        if username not in server.users:
            server.users.append(username)

    def _load(self, name: str, oaio_id: str, path: str = "", need: str = "read") -> dict[str, Any]:
        """The visible object for a call (404 strangers, 403 a right too small, 410 deleted)."""
        obj = self.s._enter(name, oaio_id, path, write=need != "read")
        if obj is None or self.username not in obj["subs"]:
            raise NotFound(f"object {oaio_id!r} not found")
        right = obj["subs"][self.username]
        if (need == "update" and not can_update(right)) or (need == "delete" and not can_delete(right)):
            raise Forbidden(f"access right {right!r} does not allow to {need}")
        return obj

    def _doc(self, oaio_id: str) -> dict[str, Any]:
        return self.s.doc(oaio_id, self.username)

    # --- objects ------------------------------------------------------------------------------
    def list_objects(self) -> tuple[list[dict[str, Any]], int]:
        self.s._enter("list_objects", "", write=False)
        self.s.listings += 1
        ids = [i for i, o in self.s.objects.items() if self.username in o["subs"] and not o["deleted"]]
        return [self._doc(i) for i in ids], len(self.s.events)

    def changes(self, cursor: int = 0, wait: float = 0.0, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
        self.s._enter("changes", "", write=False)
        mine = [{"id": str(n + 1), "subject": oid} for n, (oid, users) in enumerate(self.s.events)
                if n >= cursor and self.username in users][:limit]
        return mine, int(mine[-1]["id"]) if mine else len(self.s.events)

    def get_object(self, oaio_id: str) -> dict[str, Any]:
        self._load("get_object", oaio_id)
        return self._doc(oaio_id)

    def create_object(self, values: dict[str, Any], oaio_id: str | None = None, **_: Any) -> dict[str, Any]:
        assert oaio_id
        if self.s._enter("create_object", oaio_id) is not None:
            raise AlreadyExists("exists")
        self.s.objects[oaio_id] = {"oaio_id": oaio_id, "owner": self.username, "values": dict(values),
                                   "version": 1, "stamp": now_stamp(), "deleted": None, "files": {},
                                   "subs": {self.username: "C"}}
        self.s.emit(oaio_id)
        return self._doc(oaio_id)

    def update_values(self, oaio_id: str, values: dict[str, Any], *, mode: str = "merge",
                      base_version: int | None = None) -> dict[str, Any]:
        obj = self._load("update_values", oaio_id, need="update")
        if base_version is not None and base_version != obj["version"]:
            raise VersionConflict("stale", {"current_version": obj["version"]})
        obj["values"] = dict(values) if mode == "replace" else {**obj["values"], **values}
        self.s.bump(oaio_id)
        return self._doc(oaio_id)

    def delete_object(self, oaio_id: str, base_version: int | None = None) -> dict[str, Any]:
        obj = self._load("delete_object", oaio_id, need="delete")
        if base_version is not None and base_version != obj["version"]:
            raise VersionConflict("stale")
        self.s.bump(oaio_id)
        obj["deleted"] = obj["stamp"]
        return self._doc(oaio_id)

    # --- files ----------------------------------------------------------------------------------
    def put(self, oaio_id: str, path: str, data: bytes, base_version: int | None) -> dict[str, Any]:
        """One whole file (the client's one-shot upload); ``{"version", "sha256", "size"}``."""
        self._load("put", oaio_id, path, need="update")
        entry = self.s.commit(oaio_id, path, data, base_version)
        return {"version": entry["version"], "sha256": entry["sha256"], "size": entry["size"]}

    def put_file(self, oaio_id: str, path: str, data: bytes, *, base_version: int | None = None,
                 mtime: float | None = None) -> dict[str, Any]:
        self._load("put_file", oaio_id, path, need="update")
        return self.s.commit(oaio_id, path, data, base_version)

    def set_file_meta(self, oaio_id: str, path: str, *, mode: int | None = None, mtime_ns: int | None = None,
                      base_version: int | None = None) -> dict[str, Any]:
        obj = self._load("set_file_meta", oaio_id, path, need="update")
        entry = obj["files"].get(path)
        if entry is None:
            raise NotFound("no such file")
        if mode is not None:
            entry["mode"] = mode
        if mtime_ns is not None:
            entry["mtime_ns"], entry["mtime"] = mtime_ns, mtime_ns / 1e9
        self.s.bump(oaio_id)
        return self._doc(oaio_id)

    def delete_file(self, oaio_id: str, path: str, base_version: int | None = None) -> dict[str, Any]:
        obj = self._load("delete_file", oaio_id, path, need="update")
        if path not in obj["files"]:
            raise NotFound("no such file")
        self.s.check_file_base(obj, path, base_version)
        del obj["files"][path]
        self.s.bump(oaio_id)
        return self._doc(oaio_id)

    def make_dir(self, oaio_id: str, path: str) -> dict[str, Any]:
        obj = self._load("make_dir", oaio_id, path, need="update")
        if path in obj["files"]:
            raise AlreadyExists("exists")
        version = self.s.bump(oaio_id)
        obj["files"][path] = {"path": path, "kind": "dir", "size": 0, "sha256": None, "version": version,
                              "stamp": "", "mtime": 0.0}
        return self._doc(oaio_id)

    def move(self, oaio_id: str, src: str, dst: str, *, base_version: int | None = None,
             overwrite: bool = False) -> dict[str, Any]:
        obj = self._load("move", oaio_id, src, need="update")
        entry = obj["files"].get(src)
        if entry is None:
            raise NotFound("no such file")
        self.s.check_file_base(obj, src, base_version)
        version = self.s.bump(oaio_id)
        if entry["kind"] == "dir":          # a folder moves with its subtree (each entry a new version)
            moved = [p for p in obj["files"] if p == src or p.startswith(src + "/")]
        else:
            moved = [src]
        entries = {p: obj["files"].pop(p) for p in moved}
        obj["files"].pop(dst, None)
        for p, f in entries.items():
            new = dst + p[len(src):]
            obj["files"][new] = {**f, "path": new, "version": version}
        return self._doc(oaio_id)

    # --- sharing ----------------------------------------------------------------------------------
    def set_subscription(self, oaio_id: str, username: str, access_right: str) -> int:
        obj = self._load("set_subscription", oaio_id, need="delete")
        if access_right == "x":
            obj["subs"].pop(username, None)
            self.s.emit(oaio_id, extra=username)
            return 0
        obj["subs"][username] = access_right
        self.s.emit(oaio_id)
        return 1

    def subscriptions(self, oaio_id: str) -> list[dict[str, str]]:
        obj = self._load("subscriptions", oaio_id)
        return [{"username": u, "access_right": r} for u, r in obj["subs"].items()]

    def users(self) -> list[str]:
        self.s._enter("users", "", write=False)
        return list(self.s.users)

    def logout(self) -> None:
        pass

    def close(self) -> None:
        pass


class BatchingFakeApi(FakeApi):
    """:class:`FakeApi` with the batch endpoint: each file as by :meth:`put` (a stale base conflicts
    that file only); ``batches`` holds the paths of each call."""

    def __init__(self, server: FakeServer, username: str = "me") -> None:
        super().__init__(server, username)
        self.batches: list[list[str]] = []

    def commit_batch(self, oaio_id: str, files: list[Any]) -> list[dict[str, Any]]:
        self._load("commit_batch", oaio_id, need="update")
        self.batches.append([f.path for f in files])
        results = []
        for item in files:
            try:
                entry = self.s.commit(oaio_id, item.path, item.data, item.base_version,
                                      mode=getattr(item, "mode", None), mtime_ns=getattr(item, "mtime_ns", None))
                self.s.make_parents(oaio_id, item.path, entry["version"])
                results.append({"path": item.path, "status": "ok", "version": entry["version"]})
            except VersionConflict as exc:
                results.append({"path": item.path, "status": "conflict", "error": exc.to_json()})
            except OaioError as exc:
                results.append({"path": item.path, "status": "error", "error": exc.to_json()})
        for result in results:
            result["object_version"] = self.s.objects[oaio_id]["version"]
        return results


class FakeUploader:
    """``TusUploader.upload_file``: chunked, resumable uploads (create, PATCH of ``chunk_size`` bytes,
    a persisted URL handed to ``on_url``; a known URL resumes at its offset). ``calls`` records
    ``(oaio_id, path, url)`` per upload, ``sent_bytes`` the bytes sent."""

    def __init__(self, api: FakeApi | FakeServer, chunk_size: int = 4) -> None:
        self.api = api if isinstance(api, FakeApi) else FakeApi(api)
        self.s = self.api.s
        self.chunk_size = chunk_size
        self.sent_bytes = 0
        self.calls: list[tuple[str, str, str | None]] = []

    def upload_file(self, local_path: Path, oaio_id: str, path: str, *, url: str | None = None,
                    sha256: str | None = None, base_version: int | None = None, mtime: float | None = None,
                    on_url: Callable[[str], None] | None = None,
                    on_progress: Callable[[int, int], None] | None = None, mtime_ns: int | None = None,
                    mode: int | None = None) -> dict[str, Any]:
        data = Path(local_path).read_bytes()
        self.api._load("upload", oaio_id, path, need="update")
        self.calls.append((oaio_id, path, url))
        upload = self.s.uploads.get(url) if url is not None else None
        if upload is not None and upload.get("result"):
            return dict(upload["result"])
        if upload is None:                     # new, or expired on the server: start afresh
            url = f"fake://{len(self.s.uploads) + 1}"
            upload = self.s.uploads[url] = {"offset": 0, "buf": b""}
            if on_url:
                on_url(url)
        if on_progress:
            on_progress(upload["offset"], len(data))
        while upload["offset"] < len(data):
            chunk = data[upload["offset"]:upload["offset"] + self.chunk_size]
            self.s._enter("patch", oaio_id, path)
            upload["buf"] += chunk
            upload["offset"] += len(chunk)
            self.sent_bytes += len(chunk)
            if on_progress:
                on_progress(upload["offset"], len(data))
        if sha256 and hashlib.sha256(upload["buf"]).hexdigest() != sha256:
            del self.s.uploads[url]
            raise ChecksumMismatch("whole-file sha256 does not match")
        entry = self.s.commit(oaio_id, path, upload["buf"], base_version, mode=mode, mtime_ns=mtime_ns)
        upload["result"] = {"version": entry["version"], "sha256": entry["sha256"], "size": entry["size"]}
        return dict(upload["result"])


class FakeDownloader:
    """``CartDownloader.fetch``: members land at ``dest/<bundle path>``, checked (``corrupt``: a
    byte too many, so the check fails)."""

    def __init__(self, api: FakeApi, corrupt: bool = False) -> None:
        self.api, self.corrupt = api, corrupt

    def fetch(self, fileids: list[Mapping[str, str]], dest_dir: Path, timeout: float = 300.0) -> list[Path]:
        out = []
        for entry in fileids:
            oaio_id, path = split_cart_file_id(entry["id"])
            data = self.api._load("cart", oaio_id, path)["files"][path]["data"] + (b"!" if self.corrupt else b"")
            if hashlib.sha256(data).hexdigest() != entry["hashsum"]:
                raise ChecksumMismatch(f"{path}: sha256 mismatch")
            target = Path(dest_dir) / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            out.append(target)
        return out
