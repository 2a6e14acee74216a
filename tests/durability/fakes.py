"""A small in-memory stand-in for ApiClient + TusUploader (unit tests of the journal layer only).

It follows the version rules of ``oaiofs.protocol``: every change bumps the object
version by one; a file's version is the object version it was written at; a stale
``base_version`` raises ``VersionConflict``; ``base_version=0`` means "must not exist".
``fail_next`` injects errors; ``calls`` records every call in order.
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any, Callable

from oaiofs.errors import (AlreadyExists, ChecksumMismatch, Forbidden, Gone, NotFound, OaioError, VersionConflict)


class FakeServer:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.failures: list[OaioError] = []
        self.forbidden: set[str] = set()
        self.lock = threading.Lock()
        self.on_call: Callable[[str], None] | None = None

    # --- helpers -----------------------------------------------------------------------
    def fail_next(self, *errors: OaioError) -> None:
        self.failures.extend(errors)

    def _enter(self, name: str, oaio_id: str, path: str = "", write: bool = True) -> dict[str, Any] | None:
        if self.on_call:
            self.on_call(name)
        with self.lock:
            self.calls.append((name, oaio_id, path))
            if self.failures:
                raise self.failures.pop(0)
            obj = self.objects.get(oaio_id)
            if obj is not None and write and oaio_id in self.forbidden:
                raise Forbidden("no update right")
            if obj is not None and obj["deleted"]:
                raise Gone("deleted")
            return obj

    @staticmethod
    def _file(obj: dict[str, Any], path: str) -> dict[str, Any] | None:
        return next((f for f in obj["files"] if f["path"] == path), None)

    def _check_file_base(self, obj: dict[str, Any], path: str, base: int | None) -> None:
        if base is None:
            return
        current = self._file(obj, path)
        if (current["version"] if current else 0) != base:
            raise VersionConflict("stale", {"current_version": current["version"] if current else 0})

    def commit(self, oaio_id: str, path: str, data: bytes, base: int | None, *, mode: int | None = None,
               mtime_ns: int | None = None) -> dict[str, Any]:
        obj = self.objects.get(oaio_id)
        if obj is None:
            raise NotFound("no object")
        if oaio_id in self.forbidden:
            raise Forbidden("no update right")
        self._check_file_base(obj, path, base)
        obj["version"] += 1
        entry = {"path": path, "kind": "file", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                 "version": obj["version"], "stamp": "", "mtime": (mtime_ns or 0) / 1e9,
                 "mode": 0o644 if mode is None else mode, "mtime_ns": mtime_ns or 0}
        obj["files"] = [f for f in obj["files"] if f["path"] != path] + [entry]
        self.blobs[(oaio_id, path)] = data
        return dict(entry)

    def doc(self, oaio_id: str) -> dict[str, Any]:
        obj = self.objects[oaio_id]
        return {**obj, "values": dict(obj["values"]), "files": [dict(f) for f in obj["files"]]}


class FakeApi:
    def __init__(self, server: FakeServer) -> None:
        self.s = server

    def get_object(self, oaio_id: str) -> dict[str, Any]:
        if self.s._enter("get_object", oaio_id, write=False) is None:
            raise NotFound("no object")
        return self.s.doc(oaio_id)

    def create_object(self, values: dict[str, Any], oaio_id: str | None = None, **_: Any) -> dict[str, Any]:
        assert oaio_id
        if self.s._enter("create_object", oaio_id) is not None:
            raise AlreadyExists("exists")
        self.s.objects[oaio_id] = {"oaio_id": oaio_id, "values": dict(values), "version": 1, "files": [],
                                   "deleted": None}
        return self.s.doc(oaio_id)

    def update_values(self, oaio_id: str, values: dict[str, Any], *, mode: str = "merge",
                      base_version: int | None = None) -> dict[str, Any]:
        obj = self.s._enter("update_values", oaio_id)
        if obj is None:
            raise NotFound("no object")
        if base_version is not None and base_version != obj["version"]:
            raise VersionConflict("stale", {"current_version": obj["version"]})
        obj["values"] = dict(values) if mode == "replace" else {**obj["values"], **values}
        obj["version"] += 1
        return self.s.doc(oaio_id)

    def delete_object(self, oaio_id: str, base_version: int | None = None) -> dict[str, Any]:
        obj = self.s._enter("delete_object", oaio_id)
        if obj is None:
            raise NotFound("no object")
        if base_version is not None and base_version != obj["version"]:
            raise VersionConflict("stale")
        obj["version"] += 1
        obj["deleted"] = "now"
        return self.s.doc(oaio_id)

    def put_file(self, oaio_id: str, path: str, data: bytes, *, base_version: int | None = None,
                 mtime: float | None = None) -> dict[str, Any]:
        self.s._enter("put_file", oaio_id, path)
        return self.s.commit(oaio_id, path, data, base_version)

    def set_file_meta(self, oaio_id: str, path: str, *, mode: int | None = None, mtime_ns: int | None = None,
                      base_version: int | None = None) -> dict[str, Any]:
        obj = self.s._enter("set_file_meta", oaio_id, path)
        entry = self.s._file(obj, path) if obj else None
        if entry is None:
            raise NotFound("no such file")
        if mode is not None:
            entry["mode"] = mode
        if mtime_ns is not None:
            entry["mtime_ns"], entry["mtime"] = mtime_ns, mtime_ns / 1e9
        obj["version"] += 1
        return self.s.doc(oaio_id)

    def delete_file(self, oaio_id: str, path: str, base_version: int | None = None) -> dict[str, Any]:
        obj = self.s._enter("delete_file", oaio_id, path)
        if obj is None or self.s._file(obj, path) is None:
            raise NotFound("no such file")
        self.s._check_file_base(obj, path, base_version)
        obj["files"] = [f for f in obj["files"] if f["path"] != path]
        obj["version"] += 1
        return self.s.doc(oaio_id)

    def make_dir(self, oaio_id: str, path: str) -> dict[str, Any]:
        obj = self.s._enter("make_dir", oaio_id, path)
        if obj is None:
            raise NotFound("no object")
        if self.s._file(obj, path):
            raise AlreadyExists("exists")
        obj["version"] += 1
        obj["files"].append({"path": path, "kind": "dir", "size": 0, "sha256": None, "version": obj["version"],
                             "stamp": "", "mtime": 0.0})
        return self.s.doc(oaio_id)

    def move(self, oaio_id: str, src: str, dst: str, *, base_version: int | None = None,
             overwrite: bool = False) -> dict[str, Any]:
        obj = self.s._enter("move", oaio_id, src)
        entry = self.s._file(obj, src) if obj else None
        if entry is None:
            raise NotFound("no such file")
        self.s._check_file_base(obj, src, base_version)
        obj["version"] += 1
        if entry["kind"] == "dir":          # a folder moves with its subtree (each entry a new version)
            moved = [f for f in obj["files"] if f["path"] == src or f["path"].startswith(src + "/")]
        else:
            moved = [entry]
        obj["files"] = [f for f in obj["files"] if f not in moved and f["path"] != dst]
        for f in moved:
            new = dst + f["path"][len(src):]
            obj["files"].append({**f, "path": new, "version": obj["version"]})
            if (oaio_id, f["path"]) in self.s.blobs:
                self.s.blobs[(oaio_id, new)] = self.s.blobs.pop((oaio_id, f["path"]))
        if entry["kind"] != "dir":
            self.s.blobs.setdefault((oaio_id, dst), b"")
        return self.s.doc(oaio_id)


class FakeUploader:
    """Chunked, resumable uploads into ``FakeServer`` (tus semantics: create, PATCH, HEAD)."""

    def __init__(self, server: FakeServer, chunk_size: int = 4) -> None:
        self.s = server
        self.chunk_size = chunk_size
        self.sent_bytes = 0

    def upload_file(self, local_path: Path, oaio_id: str, path: str, *, url: str | None = None,
                    sha256: str | None = None, base_version: int | None = None, mtime: float | None = None,
                    on_url: Callable[[str], None] | None = None,
                    on_progress: Callable[[int, int], None] | None = None, mtime_ns: int | None = None,
                    mode: int | None = None) -> dict[str, Any]:
        data = Path(local_path).read_bytes()
        self.s._enter("upload", oaio_id, path)
        upload = self.s.uploads.get(url) if url is not None else None
        if upload is not None and upload.get("result"):
            return upload["result"]
        if upload is None:                     # new, or expired on the server: start afresh
            if oaio_id not in self.s.objects:
                raise NotFound("no object")
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
        return upload["result"]
