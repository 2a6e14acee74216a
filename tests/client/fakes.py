"""A small in-memory stand-in for the server, seen through ``ApiClient``/``TusUploader``/``CartDownloader``.

Only for unit tests of the sync layer; the integration tests use the real server.
It keeps the protocol's rules that sync relies on: object and per-file versions,
409 ``VersionConflict`` on a stale base, rights (404 strangers, 403 too small),
tombstones (410), and the listing of visible objects.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from oaiofs.errors import AlreadyExists, ChecksumMismatch, Forbidden, Gone, NotFound, Unavailable, VersionConflict
from oaiofs.protocol import can_delete, can_update, now_stamp, split_cart_file_id


class FakeServer:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.online = True
        self.users: list[str] = []
        self.events: list[tuple[str, set[str]]] = []     # (oaio_id, recipients); index + 1 = cursor
        self.listings = 0

    def emit(self, oaio_id: str, extra: str | None = None) -> None:
        recipients = set(self.objects[oaio_id]["subs"]) | ({extra} if extra else set())
        self.events.append((oaio_id, recipients))

    def check(self) -> None:
        if not self.online:
            raise Unavailable("server 127.0.0.1 is unreachable (ConnectionError)")


class FakeApi:
    """The subset of ``ApiClient`` that ``Synchronizer`` and ``OaioClient`` call."""

    def __init__(self, server: FakeServer, username: str) -> None:
        self.server, self.username = server, username
        self.batches: list[list[str]] = []          # paths of each commit_batch call
        if username not in server.users:
            server.users.append(username)

    def _load(self, oaio_id: str, need: str = "read") -> dict[str, Any]:
        self.server.check()
        obj = self.server.objects.get(oaio_id)
        if obj is None or self.username not in obj["subs"]:
            raise NotFound(f"object {oaio_id!r} not found")
        if obj["deleted"]:
            raise Gone(f"object {oaio_id!r} was deleted")
        right = obj["subs"][self.username]
        if (need == "update" and not can_update(right)) or (need == "delete" and not can_delete(right)):
            raise Forbidden(f"access right {right!r} does not allow to {need}")
        return obj

    def _doc(self, oaio_id: str) -> dict[str, Any]:
        obj = self.server.objects[oaio_id]
        files = [{k: v for k, v in f.items() if k != "data"} | {"path": p} for p, f in sorted(obj["files"].items())]
        return {"oaio_id": oaio_id, "owner": obj["owner"], "values": dict(obj["values"]), "version": obj["version"],
                "stamp": obj["stamp"], "access_right": obj["subs"].get(self.username, "x"), "files": files,
                "app_id": "", "device_id": "", "deleted": None}

    def _bump(self, obj: dict[str, Any]) -> int:
        obj["version"] += 1
        obj["stamp"] = now_stamp()
        self.server.emit(next(i for i, o in self.server.objects.items() if o is obj))
        return obj["version"]

    def list_objects(self) -> tuple[list[dict[str, Any]], int]:
        self.server.check()
        self.server.listings += 1
        ids = [i for i, o in self.server.objects.items() if self.username in o["subs"] and not o["deleted"]]
        return [self._doc(i) for i in ids], len(self.server.events)

    def changes(self, cursor: int = 0, wait: float = 0.0, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
        self.server.check()
        mine = [{"id": str(n + 1), "subject": oid} for n, (oid, users) in enumerate(self.server.events)
                if n >= cursor and self.username in users][:limit]
        return mine, int(mine[-1]["id"]) if mine else len(self.server.events)

    def get_object(self, oaio_id: str) -> dict[str, Any]:
        self._load(oaio_id)
        return self._doc(oaio_id)

    def create_object(self, values: dict[str, Any], oaio_id: str | None = None, **_kw: Any) -> dict[str, Any]:
        self.server.check()
        if oaio_id in self.server.objects:
            raise AlreadyExists("exists")
        self.server.objects[oaio_id] = {"owner": self.username, "values": dict(values), "version": 1,
                                        "stamp": now_stamp(), "deleted": False, "files": {},
                                        "subs": {self.username: "C"}}
        self.server.emit(oaio_id)
        return self._doc(oaio_id)

    def update_values(self, oaio_id: str, values: dict[str, Any], *, mode: str = "merge",
                      base_version: int | None = None) -> dict[str, Any]:
        obj = self._load(oaio_id, "update")
        if base_version is not None and base_version != obj["version"]:
            raise VersionConflict("stale", {"current_version": obj["version"]})
        obj["values"] = dict(values) if mode == "replace" else {**obj["values"], **values}
        self._bump(obj)
        return self._doc(oaio_id)

    def delete_object(self, oaio_id: str, base_version: int | None = None) -> dict[str, Any]:
        obj = self._load(oaio_id, "delete")
        if base_version is not None and base_version != obj["version"]:
            raise VersionConflict("stale")
        obj["deleted"] = True
        self._bump(obj)
        return self._doc(oaio_id)

    def delete_file(self, oaio_id: str, path: str, base_version: int | None = None) -> dict[str, Any]:
        obj = self._load(oaio_id, "update")
        if path not in obj["files"]:
            raise NotFound("no such file")
        if base_version is not None and base_version != obj["files"][path]["version"]:
            raise VersionConflict("stale")
        del obj["files"][path]
        self._bump(obj)
        return self._doc(oaio_id)

    def put(self, oaio_id: str, path: str, data: bytes, base_version: int | None) -> dict[str, Any]:
        obj = self._load(oaio_id, "update")
        current = obj["files"].get(path, {}).get("version", 0)
        if base_version is not None and base_version != current:
            raise VersionConflict("stale", {"current_version": current})
        version = self._bump(obj)
        sha = hashlib.sha256(data).hexdigest()
        obj["files"][path] = {"kind": "file", "size": len(data), "sha256": sha, "version": version,
                              "stamp": obj["stamp"], "mtime": 1.0, "data": data}
        return {"version": version, "sha256": sha, "size": len(data)}

    def commit_batch(self, oaio_id: str, files: list[Any]) -> list[dict[str, Any]]:
        """The batch endpoint: each file as by :meth:`put` (a stale base conflicts that file only)."""
        self._load(oaio_id, "update")
        self.batches.append([f.path for f in files])
        results = []
        for item in files:
            try:
                version = self.put(oaio_id, item.path, item.data, item.base_version)["version"]
                results.append({"path": item.path, "status": "ok", "version": version})
            except VersionConflict as exc:
                results.append({"path": item.path, "status": "conflict", "error": exc.to_json()})
        for result in results:
            result["object_version"] = self.server.objects[oaio_id]["version"]
        return results

    def set_subscription(self, oaio_id: str, username: str, access_right: str) -> int:
        obj = self._load(oaio_id, "delete")
        if access_right == "x":
            obj["subs"].pop(username, None)
            self.server.emit(oaio_id, extra=username)
            return 0
        obj["subs"][username] = access_right
        self.server.emit(oaio_id)
        return 1

    def subscriptions(self, oaio_id: str) -> list[dict[str, str]]:
        obj = self._load(oaio_id)
        return [{"username": u, "access_right": r} for u, r in obj["subs"].items()]

    def users(self) -> list[str]:
        self.server.check()
        return list(self.server.users)

    def logout(self) -> None:
        pass

    def close(self) -> None:
        pass


class FakeUploader:
    """``TusUploader.upload_file`` over :class:`FakeApi` (one shot, but calls ``on_url`` first)."""

    def __init__(self, api: FakeApi) -> None:
        self.api = api
        self.calls: list[tuple[str, str, str | None]] = []

    def upload_file(self, local_path: Path, oaio_id: str, path: str, *, url: str | None = None,
                    sha256: str | None = None, base_version: int | None = None, mtime: float | None = None,
                    on_url: Any = None, on_progress: Any = None, mtime_ns: int | None = None,
                    mode: int | None = None) -> dict[str, Any]:
        self.api.server.check()
        self.calls.append((oaio_id, path, url))
        if on_url is not None and url is None:
            on_url(f"fake://upload/{oaio_id}/{path}")
        return self.api.put(oaio_id, path, Path(local_path).read_bytes(), base_version)


class FakeDownloader:
    """``CartDownloader.fetch`` over :class:`FakeApi`: members land at ``dest/<bundle path>``, checked."""

    def __init__(self, api: FakeApi, corrupt: bool = False) -> None:
        self.api, self.corrupt = api, corrupt

    def fetch(self, fileids: list[dict[str, str]], dest_dir: Path, timeout: float = 300.0) -> list[Path]:
        out = []
        for entry in fileids:
            oaio_id, path = split_cart_file_id(entry["id"])
            data = self.api._load(oaio_id)["files"][path]["data"] + (b"!" if self.corrupt else b"")
            if hashlib.sha256(data).hexdigest() != entry["hashsum"]:
                raise ChecksumMismatch(f"{path}: sha256 mismatch")
            target = Path(dest_dir) / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            out.append(target)
        return out
