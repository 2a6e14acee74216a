"""``ApiClient``: the one place that talks HTTP to an oaiofs server.

One ``requests.Session`` with a connection pool, a timeout on every call, lazy
login with a bearer token (re-login once when the server answers 401), and one
error mapping: HTTP errors become the :mod:`oaiofs.errors` class the server
named, connection errors and timeouts become :class:`~oaiofs.errors.Unavailable`.
Credentials never appear in messages, logs or ``repr``.
"""
from __future__ import annotations

import io
import logging
import tarfile
import threading
from typing import IO, Any, Iterable, Protocol, Sequence, runtime_checkable
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from .. import protocol
from ..errors import OaioError, Unauthorized, Unavailable, error_from_response

log = logging.getLogger(__name__)

Timeout = float | tuple[float, float]
SUCCESS = (200, 201, 204, 206)


@runtime_checkable
class Rewindable(Protocol):
    """A request body that can be sent again after a re-login (a file or a file slice)."""

    def read(self, size: int = -1, /) -> bytes: ...
    def tell(self) -> int: ...
    def seek(self, position: int, whence: int = 0, /) -> int: ...


Body = bytes | IO[bytes] | Iterable[bytes] | Rewindable


def quote_id(oaio_id: str) -> str:
    """A valid oaio id as one URL path segment (``InvalidValue`` for a hostile id)."""
    return quote(protocol.validate_oaio_id(oaio_id), safe="")


def quote_path(path: str) -> str:
    """A valid file path as URL path segments, keeping its '/' (``InvalidValue`` for a hostile path).

    Checked here because HTTP libraries silently resolve '.'/'..' segments,
    which would address a different file.
    """
    return "/".join(quote(part, safe="") for part in protocol.normalize_file_path(path).split("/"))


def _compact(compact: bool) -> dict[str, str] | None:
    return {"compact": "true"} if compact else None


def batch_body(files: Sequence[protocol.BatchFile]) -> bytes:
    """The tar body of a batch commit (manifest first, then one member per file; see protocol)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        members = [(protocol.BATCH_MANIFEST_NAME, protocol.batch_manifest(files))]
        members += [(str(index), item.data) for index, item in enumerate(files)]
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class ApiClient:
    """A thread-safe client of one oaiofs server for one user."""

    def __init__(self, base_url: str, username: str, password: str | None = None, *, token: str | None = None,
                 timeout: Timeout = (5, 60), pool_size: int = 16, app_id: str = "", device_id: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self._token = token
        self.timeout = timeout
        self.app_id = app_id
        self.device_id = device_id
        self._login_lock = threading.Lock()
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = "oaiofs-client"
        if app_id:
            self.session.headers[protocol.HEADER_APP] = quote(app_id, safe="")
        if device_id:
            self.session.headers[protocol.HEADER_DEVICE] = quote(device_id, safe="")

    def __repr__(self) -> str:
        return f"ApiClient({self.base_url!r}, user={self.username!r})"

    # --- plumbing ---
    def url(self, path: str) -> str:
        """The absolute URL of an API ``path`` (already quoted)."""
        return self.base_url + path

    @property
    def token(self) -> str | None:
        """The current bearer token (None before the first login)."""
        return self._token

    def login(self) -> str:
        """Log in with the password and keep the bearer token."""
        if self._password is None:
            raise Unauthorized("no password to log in with", {"username": self.username})
        resp = self._send("POST", protocol.PATH_LOGIN, json={"username": self.username, "password": self._password},
                          timeout=None, auth=False)
        if resp.status_code != 200:
            raise self._error(resp)
        self._token = resp.json()["token"]
        log.debug("logged in to %s as %s", self.base_url, self.username)
        return self._token

    def logout(self) -> None:
        """Invalidate the token on the server (ignored if the server is unreachable)."""
        if self._token is None:
            return
        try:
            self.request("POST", protocol.PATH_LOGOUT, retry_login=False)
        except OaioError as exc:
            log.debug("logout failed: %s", exc)
        self._token = None

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()

    def __enter__(self) -> "ApiClient":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _ensure_token(self) -> str:
        with self._login_lock:
            return self._token or self.login()

    def _relogin(self, stale: str | None) -> None:
        with self._login_lock:
            if self._token == stale:      # another thread may have logged in already
                self._token = None
                self.login()

    def _send(self, method: str, path: str, *, auth: bool = True, timeout: Timeout | None = None,
              headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        hdrs = dict(headers or {})
        if auth:
            hdrs["Authorization"] = f"Bearer {self._ensure_token()}"
        try:
            return self.session.request(method, self.url(path), headers=hdrs,
                                        timeout=timeout if timeout is not None else self.timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Unavailable(f"server {self.base_url} is unreachable ({type(exc).__name__})",
                              {"url": self.base_url}) from None
        except requests.RequestException as exc:
            raise Unavailable(f"request to {self.base_url} failed ({type(exc).__name__})",
                              {"url": self.base_url}) from None

    @staticmethod
    def _error(resp: requests.Response) -> OaioError:
        try:
            body: Any = resp.json()
        except ValueError:
            body = resp.content[:500]
        finally:
            resp.close()
        return error_from_response(resp.status_code, body)

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
                data: Body | None = None, headers: dict[str, str] | None = None,
                stream: bool = False, timeout: Timeout | None = None, expect: Iterable[int] = SUCCESS,
                retry_login: bool = True) -> requests.Response:
        """Send an authenticated request; raise the server's ``OaioError`` unless the status is in ``expect``."""
        expect = tuple(expect)
        start = data.tell() if isinstance(data, Rewindable) else None
        token = self._ensure_token()
        resp = self._send(method, path, params=params, json=json, data=data, headers=headers, stream=stream,
                          timeout=timeout)
        if resp.status_code == 401 and retry_login and self._password is not None:
            rewindable = data is None or isinstance(data, bytes) or start is not None
            if rewindable:
                resp.close()
                log.info("token rejected by %s; logging in again", self.base_url)
                self._relogin(token)
                if start is not None and isinstance(data, Rewindable):
                    data.seek(start)
                resp = self._send(method, path, params=params, json=json, data=data, headers=headers,
                                  stream=stream, timeout=timeout)
        if resp.status_code not in expect:
            raise self._error(resp)
        return resp

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The JSON object the server answered (``{}`` for an empty body)."""
        resp = self.request(method, path, **kwargs)
        body = resp.json() if resp.content else {}
        if not isinstance(body, dict):
            raise OaioError(f"{method} {path}: the server answered {type(body).__name__}, not a JSON object")
        return body

    # --- typed helpers ---
    def whoami(self) -> dict[str, Any]:
        """``{"username", ...}`` of the logged-in user."""
        return self._json("GET", protocol.PATH_WHOAMI)

    def stamp(self) -> str:
        """The server's current stamp."""
        return str(self._json("GET", protocol.PATH_STAMP)["current_stamp"])

    def users(self) -> list[str]:
        """All user names on the server."""
        return [str(name) for name in self._json("GET", protocol.PATH_USERS)["users"]]

    def list_objects(self) -> tuple[list[dict[str, Any]], int]:
        """Every visible object (with files and the caller's right) and the change cursor to follow."""
        body = self._json("GET", protocol.PATH_OBJECTS)
        return body["objects"], int(body["cursor"])

    def get_object(self, oaio_id: str, *, limit: int | None = None, after: str | None = None) -> dict[str, Any]:
        """One object document (``limit``/``after``: one page of its files, see ``files_next``)."""
        params: dict[str, Any] = {}
        if limit is not None:
            params["limit"] = int(limit)
        if after is not None:
            params["after"] = after
        return self._json("GET", protocol.PATH_OBJECT.format(oaio_id=quote_id(oaio_id)), params=params or None)

    def create_object(self, values: dict[str, Any], oaio_id: str | None = None, *, app_id: str | None = None,
                      device_id: str | None = None, stamp: str | None = None) -> dict[str, Any]:
        """Register a new object (the server makes a seed-style id when ``oaio_id`` is None)."""
        body: dict[str, Any] = {"values": values}
        for key, value in (("oaio_id", oaio_id), ("app_id", app_id if app_id is not None else self.app_id),
                           ("device_id", device_id if device_id is not None else self.device_id), ("stamp", stamp)):
            if value is not None:
                body[key] = value
        return self._json("POST", protocol.PATH_OBJECTS, json=body)

    def update_values(self, oaio_id: str, values: dict[str, Any], *, mode: str = "merge",
                      base_version: int | None = None) -> dict[str, Any]:
        """Merge into or replace an object's values; a stale ``base_version`` raises ``VersionConflict``."""
        body: dict[str, Any] = {"values": values, "mode": mode}
        if base_version is not None:
            body["base_version"] = base_version
        return self._json("PATCH", protocol.PATH_OBJECT.format(oaio_id=quote_id(oaio_id)), json=body)

    def delete_object(self, oaio_id: str, base_version: int | None = None) -> dict[str, Any]:
        """Delete (tombstone) an object; returns its last document."""
        params = {"base_version": base_version} if base_version is not None else None
        return self._json("DELETE", protocol.PATH_OBJECT.format(oaio_id=quote_id(oaio_id)), params=params)

    def _file_path(self, template: str, oaio_id: str, path: str) -> str:
        return template.format(oaio_id=quote_id(oaio_id), path=quote_path(path))

    def get_file(self, oaio_id: str, path: str, *, start: int | None = None, end: int | None = None) -> bytes:
        """The bytes of a file, or of ``[start, end)`` of it (``end`` exclusive, like slicing)."""
        headers = {}
        if start is not None or end is not None:
            first = start or 0
            headers["Range"] = f"bytes={first}-{'' if end is None else end - 1}"
        resp = self.request("GET", self._file_path(protocol.PATH_FILE, oaio_id, path), headers=headers)
        return resp.content

    def file_info(self, oaio_id: str, path: str, *, compact: bool = False) -> dict[str, Any]:
        """The FileDoc of an attached file; ``compact``: plus ``object``, the CompactDoc of its
        commit while the object has not changed since (docs/api.md)."""
        return self._json("GET", self._file_path(protocol.PATH_FILE_INFO, oaio_id, path), params=_compact(compact))

    def put_file(self, oaio_id: str, path: str, data: bytes | IO[bytes], *, base_version: int | None = None,
                 mtime: float | None = None, mtime_ns: int | None = None, mode: int | None = None) -> dict[str, Any]:
        """Upload a whole file in one request (small files; use ``TusUploader`` for big ones)."""
        params: dict[str, Any] = {}
        if base_version is not None:
            params["base_version"] = base_version
        if mtime is not None:
            params["mtime"] = mtime
        if mtime_ns is not None:
            params["mtime_ns"] = int(mtime_ns)
        if mode is not None:
            params["mode"] = int(mode)
        return self._json("PUT", self._file_path(protocol.PATH_FILE, oaio_id, path), params=params or None,
                          data=data, headers={"Content-Type": "application/octet-stream"})

    def commit_batch(self, oaio_id: str, files: Sequence[protocol.BatchFile]) -> list[dict[str, Any]]:
        """Commit many small files of one existing object in one request and one server transaction.

        Returns one :class:`~oaiofs.protocol.BatchResult` per file, in order (``status`` "ok",
        "conflict" or "error"). Whole-request failures (401, 403, 404, 413, 422 for a hostile path
        or a malformed body, ...) raise the usual ``OaioError``; then nothing was applied.
        Split big sets with :func:`oaiofs.protocol.plan_batches` first.
        """
        files = list(files)
        if not files:
            return []
        results: list[dict[str, Any]] = self.commit_batch_answer(oaio_id, files)["results"]
        return results

    def commit_batch_answer(self, oaio_id: str, files: Sequence[protocol.BatchFile], *,
                            compact: bool = False) -> dict[str, Any]:
        """:meth:`commit_batch`, answering the server's whole answer: ``{"object_version", "stamp",
        "results"}`` and with ``compact`` also the batch's CompactDoc fields (docs/api.md)."""
        files = list(files)
        resp = self.request("POST", protocol.PATH_BATCH.format(oaio_id=quote_id(oaio_id)),
                            data=batch_body(files), headers={"Content-Type": protocol.BATCH_CONTENT_TYPE},
                            params=_compact(compact))
        body: dict[str, Any] = resp.json()
        results = list(body.get("results") or [])
        if len(results) != len(files):
            raise OaioError("the server answered a batch with the wrong number of results",
                            {"sent": len(files), "results": len(results)})
        body["results"] = results
        return body

    def set_file_meta(self, oaio_id: str, path: str, *, mode: int | None = None, mtime_ns: int | None = None,
                      base_version: int | None = None, compact: bool = False) -> dict[str, Any]:
        """chmod/utimes of a file, folder or link without sending bytes; returns the object document
        (``compact``: a CompactDoc of the changed entry)."""
        body: dict[str, Any] = {}
        if mode is not None:
            body["mode"] = int(mode)
        if mtime_ns is not None:
            body["mtime_ns"] = int(mtime_ns)
        if base_version is not None:
            body["base_version"] = base_version
        return self._json("PATCH", self._file_path(protocol.PATH_FILE, oaio_id, path), json=body,
                          params=_compact(compact))

    def make_link(self, oaio_id: str, path: str, target: str, *, mtime_ns: int | None = None,
                  base_version: int | None = None, compact: bool = False) -> dict[str, Any]:
        """Create or replace a symbolic link ``path`` -> ``target``; returns the object document."""
        body: dict[str, Any] = {"target": target}
        if mtime_ns is not None:
            body["mtime_ns"] = int(mtime_ns)
        if base_version is not None:
            body["base_version"] = base_version
        return self._json("PUT", self._file_path(protocol.PATH_LINK, oaio_id, path), json=body,
                          params=_compact(compact))

    def delete_file(self, oaio_id: str, path: str, base_version: int | None = None, *,
                    compact: bool = False) -> dict[str, Any]:
        """Delete a file or (recursively) a folder; returns the object document."""
        params: dict[str, Any] = {"base_version": base_version} if base_version is not None else {}
        params.update(_compact(compact) or {})
        return self._json("DELETE", self._file_path(protocol.PATH_FILE, oaio_id, path), params=params or None)

    def make_dir(self, oaio_id: str, path: str, *, compact: bool = False) -> dict[str, Any]:
        """Create an explicit (possibly empty) folder; returns the object document."""
        return self._json("POST", self._file_path(protocol.PATH_DIR, oaio_id, path), params=_compact(compact))

    def move(self, oaio_id: str, src: str, dst: str, *, base_version: int | None = None,
             overwrite: bool = False, compact: bool = False) -> dict[str, Any]:
        """Move/rename a file or folder inside one object; returns the object document."""
        body: dict[str, Any] = {"src": src, "dst": dst, "overwrite": overwrite}
        if base_version is not None:
            body["base_version"] = base_version
        return self._json("POST", protocol.PATH_MOVE.format(oaio_id=quote_id(oaio_id)), json=body,
                          params=_compact(compact))

    def subscriptions(self, oaio_id: str) -> list[dict[str, str]]:
        """``[{"username", "access_right"}]`` of an object, sorted like the seed's ``userz_access``."""
        subscriptions: list[dict[str, str]] = self._json(
            "GET", protocol.PATH_SUBSCRIPTIONS.format(oaio_id=quote_id(oaio_id)))["subscriptions"]
        return subscriptions

    def set_subscription(self, oaio_id: str, username: str, access_right: str) -> int:
        """Grant/change a user's right (``"x"`` removes it); returns the subscription id (0 if removed)."""
        path = protocol.PATH_SUBSCRIPTION.format(oaio_id=quote_id(oaio_id), username=quote(username, safe=""))
        return int(self._json("PUT", path, json={"access_right": access_right})["pid"])

    def changes(self, cursor: int = 0, wait: float = 0.0, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
        """Change events after ``cursor`` (long-polls up to ``wait`` seconds) and the next cursor."""
        wait = max(0.0, min(float(wait), protocol.MAX_CHANGES_WAIT_S))
        connect = self.timeout[0] if isinstance(self.timeout, tuple) else self.timeout
        read = self.timeout[1] if isinstance(self.timeout, tuple) else self.timeout
        body = self._json("GET", protocol.PATH_CHANGES, params={"cursor": cursor, "wait": wait, "limit": limit},
                          timeout=(connect, read + wait))
        return body["events"], int(body["cursor"])
