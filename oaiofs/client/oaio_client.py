"""``OaioClient``: the seed's oaio client API, offline-first, on top of ``ApiClient``.

Public API (return conventions of the seed: failures answer ``None``/``False``/
``0``/``[]`` and explain themselves in :attr:`OaioClient.error_message`; assigning
a text to it appends, assigning ``""`` resets; the password never appears; a
conflict resolved by keeping both versions is reported there too, as
``"conflict, both versions kept: …"``, without failing the call)::

  client = OaioClient(host, {"username": ..., "password": ...}, app_id="", device_id="",
                      csh_default_id="oaiofs", client_root="{usr}/oaio_root/")
  client.register_object(values, stamp="", oaio_id="", csh_id="") -> OaiObject | None
  client.register_file(file_name, file_content=None, root_path="", stamp="", csh_id="") -> OaiObject | None
  client.register_folder(root_path, stamp="", csh_id="") -> OaiObject | None
  client.update_object(oaio_id, values, stamp="", reset=False) -> OaiObject | None
  client.update_file(oaio_id, file_name="", file_content=None, root_path="", stamp="") -> OaiObject | None
  client.update_folder(oaio_id, root_path="", stamp="") -> OaiObject | None
  client.unregister_object(oaio_id, wipe_files=False) -> str        # "" or the error text
  client.upsert_subscription(oaio_id, user_name, access_right="r") -> int   # subscription id, 0 on error
  client.unsubscribe(oaio_id, user_name) -> str                     # "" or the error text
  client.userz_access(oaio_id) -> list[{"username", "access_right"}]  # all users, sorted C<D<U<r<x
  client.synchronize_with_server_if_online() -> bool
  client.last_sync_stamp -> str;  client.error_message -> str;  client.client_objectz -> dict[str, OaiObject]
  client.sync_report -> SyncReport of the last sync (conflicts kept, transfers, removals)
  client.files_root(oaio_id) -> Path | None   # where the object's files are on this device

``host`` is ``"127.0.0.1:8470"`` (``http://`` for localhost/127.0.0.1, else
``https://``) or a full URL. Every change is first saved in ``client_root`` (see
:mod:`oaiofs.client.local_state`) and then pushed; a change made offline is kept
and pushed by the next successful :meth:`~OaioClient.synchronize_with_server_if_online`.
Registering works offline too (the object is returned; it is uploaded later).
Conflicts never lose data (see :mod:`oaiofs.client.sync`). Rights are checked
locally before a change is queued (``r`` may not update, only ``C``/``D`` may
unregister). ``unregister_object(wipe_files=True)`` deletes only
``client_root/filez/<id>/``, never a folder the user chose.
"""
from __future__ import annotations

import copy
import getpass
import logging
import socket
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

from ..errors import Forbidden, InvalidValue, NotFound, OaioError
from ..protocol import (NO_ACCESS_RIGHT, can_delete, can_update, defuse, is_stamp, make_oaio_id,
                        normalize_file_path, userz_access_sort_key, validate_oaio_id, validate_values)
from .api import ApiClient
from .carts import CartDownloader
from .file_meta import list_entries
from .local_paths import is_inside, resolve_placeholders, safe_join
from .local_state import LAST_SYNC_STAMP_FILE, LocalState, atomic_write_bytes
from .oaio_object import OaiObject
from .sync import SyncReport, Synchronizer, next_stamp
from .uploads import TusUploader

log = logging.getLogger(__name__)

__all__ = ["OaioClient", "OaiObject", "LAST_SYNC_STAMP_FILE", "base_url_of"]

T = TypeVar("T")
_SECRET_MASK = "********"


def base_url_of(host: str) -> str:
    """``"127.0.0.1:8470"`` -> ``"http://127.0.0.1:8470"``; other bare hosts get https; URLs stay."""
    host = host.strip().rstrip("/")
    if "://" in host:
        return host
    scheme = "http" if host.startswith(("localhost", "127.0.0.1", "[::1]")) else "https"
    return f"{scheme}://{host}"


def default_app_id() -> str:
    """The running program's name, defused (seed: ``app_name_guess``)."""
    name = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else ""
    return defuse(name if name and name not in ("-c", "python", "__main__") else "oaiofs")


class OaioClient:
    """Manage a user's oaio objects offline-first and synchronise them with an oaiofs server."""

    def __init__(self, host: str, credentials: dict[str, str], app_id: str = "", device_id: str = "",
                 csh_default_id: str = "oaiofs", client_root: str = "{usr}/oaio_root/", *,
                 api: Any = None, uploader: Any = None, downloader: Any = None) -> None:
        """Open (or create) the local state under ``client_root``; nothing is sent yet.

        ``csh_default_id`` is only recorded on objects (oaiofs stores files on its own
        server). ``api``/``uploader``/``downloader`` replace the ``ApiClient``/
        ``TusUploader``/``CartDownloader`` built from ``host`` and ``credentials``.
        """
        self._username = str(credentials.get("username") or getpass.getuser())
        self._password = credentials.get("password")    # read once; the caller's dict is never touched
        self.app_id = app_id or default_app_id()
        self.device_id = device_id or defuse(socket.gethostname())
        self.csh_default_id = csh_default_id
        self.client_root = resolve_placeholders(client_root)
        self._error_message = ""
        self.sync_report = SyncReport()
        self.state = LocalState(self.client_root)
        self.api = api or ApiClient(base_url_of(host), self._username, self._password,
                                    app_id=self.app_id, device_id=self.device_id)
        self._sync = Synchronizer(self.state, self.api, uploader or TusUploader(self.api),
                                  downloader or CartDownloader(self.api),
                                  username=self._username, device_id=self.device_id, app_id=self.app_id)
        self._collect_state_problems()

    def __repr__(self) -> str:
        return (f"OaioClient({getattr(self.api, 'base_url', '')!r}, user={self._username!r}, "
                f"client_root={str(self.client_root)!r})")

    def close(self) -> None:
        """Log out and close the connection pool."""
        self.api.logout()
        self.api.close()

    def __enter__(self) -> "OaioClient":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- error_message (seed ErrorMsgMixin semantics) ---
    @property
    def error_message(self) -> str:
        """Accumulated error texts since the last reset."""
        return self._error_message

    @error_message.setter
    def error_message(self, message: str) -> None:
        if not message:
            self._error_message = ""
            return
        message = self._mask(str(message))
        log.warning("%s", message)
        self._error_message = f"{self._error_message}\n\n{message}" if self._error_message else message

    def _mask(self, text: str) -> str:
        if self._password and len(self._password) >= 3:
            text = text.replace(self._password, _SECRET_MASK)
        return text

    def _collect_state_problems(self) -> None:
        for problem in self.state.take_problems():
            self.error_message = problem

    def _call(self, what: str, func: Callable[[], T], failed: T) -> T:
        """Run ``func`` under the state lock; turn an ``OaioError`` into ``failed`` + error_message."""
        try:
            with self.state.locked():
                self._collect_state_problems()
                return func()
        except OaioError as exc:
            self.error_message = f"{what} failed: {exc.message}"
        except OSError as exc:
            self.error_message = f"{what} failed: local file error: {exc}"
        finally:
            self._collect_state_problems()
        return failed

    # --- properties ---
    @property
    def user_name(self) -> str:
        """The user this client acts for."""
        return self._username

    @property
    def last_sync_stamp(self) -> str:
        """Stamp of the last error-free sync (kept in ``client_root/last_sync_stamp.txt``)."""
        return self.state.last_sync_stamp

    @last_sync_stamp.setter
    def last_sync_stamp(self, stamp: str) -> None:
        with self.state.locked():
            self.state.last_sync_stamp = stamp

    @property
    def client_objectz(self) -> dict[str, OaiObject]:
        """Copies of all objects on this device (objects pending deletion are left out)."""
        with self.state.locked():
            self._collect_state_problems()
            return {i: copy.deepcopy(o) for i, o in self.state.objects.items() if not o.pending_delete}

    def files_root(self, oaio_id: str) -> Path | None:
        """The folder holding ``oaio_id``'s attached files on this device (None if unknown)."""
        with self.state.locked():
            obj = self.state.get(oaio_id)
            return self._sync.files_root(obj) if obj else None

    # --- sync ---
    def synchronize_with_server_if_online(self) -> bool:
        """Push local changes, then pull the server's; False when offline or anything failed."""
        def run() -> bool:
            report = self._sync.sync()
            self.sync_report = report
            for text in report.conflicts:        # not failures, but the user should see them
                self.error_message = f"conflict, both versions kept: {text}"
            for text in report.errors:
                self.error_message = text
            if report.errors:
                return False
            self.state.last_sync_stamp = next_stamp(self.state.last_sync_stamp)
            return True
        return self._call("synchronize", run, False)

    def _local_change(self, what: str, change: Callable[[], OaiObject]) -> OaiObject | None:
        """Save a change locally, then try to push it; the object is returned even when offline."""
        obj = self._call(what, change, None)
        if obj is not None:
            self.synchronize_with_server_if_online()
            with self.state.locked():
                obj = copy.deepcopy(self.state.get(obj.oaio_id) or obj)
        return obj

    # --- registering ---
    def _stamp(self, stamp: str, after: str = "") -> str:
        if not stamp:
            return next_stamp(after)
        if not is_stamp(stamp):
            raise InvalidValue("stamp must be a 20-digit UTC stamp newer than the oldest sync stamp",
                               {"stamp": str(stamp)[:40]})
        if after and stamp <= after:
            raise InvalidValue("stamp must be newer than the object's current stamp",
                               {"stamp": stamp, "client_stamp": after})
        return stamp

    def _new_object(self, values: dict[str, Any], stamp: str, oaio_id: str, csh_id: str,
                    root_path: Path | None = None) -> OaiObject:
        validate_values(values)
        stamp = self._stamp(stamp)
        oaio_id = validate_oaio_id(oaio_id) if oaio_id else make_oaio_id(
            self.app_id, self._username, self.device_id, values, stamp)
        if self.state.get(oaio_id) is not None:
            raise InvalidValue(f"object {oaio_id!r} is already registered", {"oaio_id": oaio_id})
        return OaiObject(oaio_id, client_stamp=stamp, client_values=dict(values), csh_id=csh_id or self.csh_default_id,
                         username=self._username, device_id=self.device_id, app_id=self.app_id,
                         csh_access_right="C", root_path=str(root_path) if root_path else "")

    def register_object(self, values: dict[str, Any], stamp: str = "", oaio_id: str = "",
                        csh_id: str = "") -> OaiObject | None:
        """Register a new values object; returned even when offline (it is uploaded at the next sync)."""
        def change() -> OaiObject:
            obj = self._new_object(values, stamp, oaio_id, csh_id)
            self.state.save(obj)
            return obj
        return self._local_change("register_object", change)

    def register_file(self, file_name: str, file_content: bytes | None = None, root_path: str = "",
                      stamp: str = "", csh_id: str = "") -> OaiObject | None:
        """Register a file object; ``file_content`` creates the file, else it must exist under the root."""
        def change() -> OaiObject:
            name = normalize_file_path(file_name)
            values: dict[str, Any] = {"_file_paths": [name]}
            root = resolve_placeholders(root_path) if root_path else None
            if root_path:
                values["_root_path"] = root_path
            obj = self._new_object(values, stamp, "", csh_id, root)
            self._place_file(obj, name, file_content)
            self.state.save(obj)
            return obj
        return self._local_change("register_file", change)

    def register_folder(self, root_path: str, stamp: str = "", csh_id: str = "") -> OaiObject | None:
        """Register every file and symbolic link below ``root_path`` (recursively, hidden ones included).

        Links are attached as links (never followed), their targets as given (see
        :mod:`oaiofs.client.file_meta`)."""
        def change() -> OaiObject:
            root = resolve_placeholders(root_path)
            if not root.is_dir():
                raise InvalidValue(f"folder {root} does not exist")
            obj = self._new_object({"_root_path": root_path, "_file_paths": list_entries(root)}, stamp, "", csh_id,
                                   root)
            self.state.save(obj)
            return obj
        return self._local_change("register_folder", change)

    def _place_file(self, obj: OaiObject, name: str, content: bytes | None) -> None:
        target = safe_join(self._sync.files_root(obj), name)
        if content is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, content)
        elif not target.is_file():
            raise InvalidValue(f"file {target} does not exist", {"file_name": name})

    # --- updating ---
    def _editable(self, oaio_id: str) -> OaiObject:
        """A copy of ``oaio_id``'s record to change (saved only if the whole change succeeds)."""
        obj = self.state.get(oaio_id)
        if obj is None or obj.pending_delete:
            raise NotFound(f"object {oaio_id!r} is not registered on this device", {"oaio_id": oaio_id})
        if not can_update(obj.csh_access_right):
            raise Forbidden(f"access right {obj.csh_access_right!r} does not allow to update {oaio_id!r}",
                            {"oaio_id": oaio_id, "access_right": obj.csh_access_right})
        return copy.deepcopy(obj)

    def update_object(self, oaio_id: str, values: dict[str, Any], stamp: str = "",
                      reset: bool = False) -> OaiObject | None:
        """Merge ``values`` into the object's values (``reset=True`` replaces them) and sync."""
        def change() -> OaiObject:
            obj = self._editable(oaio_id)
            new_values = {} if reset else dict(obj.client_values)
            new_values.update(validate_values(values))
            obj.client_stamp = self._stamp(stamp, obj.client_stamp)
            obj.client_values = new_values
            self.state.save(obj)
            return obj
        return self._local_change("update_object", change)

    def update_file(self, oaio_id: str, file_name: str = "", file_content: bytes | None = None,
                    root_path: str = "", stamp: str = "") -> OaiObject | None:
        """Replace the attached file (new name and/or content); a dropped name is deleted on the server."""
        def change() -> OaiObject:
            obj = self._editable(oaio_id)
            current = obj.client_values.get("_file_paths") or []
            name = normalize_file_path(file_name or (current[0] if current else ""))
            if root_path:
                obj.root_path = str(resolve_placeholders(root_path))
                obj.client_values = {**obj.client_values, "_root_path": root_path}
            self._place_file(obj, name, file_content)
            obj.client_values = {**obj.client_values, "_file_paths": [name]}
            obj.client_stamp = self._stamp(stamp, obj.client_stamp)
            self.state.save(obj)
            return obj
        return self._local_change("update_file", change)

    def update_folder(self, oaio_id: str, root_path: str = "", stamp: str = "") -> OaiObject | None:
        """Rescan the object's folder (or a new ``root_path``) into ``_file_paths`` and sync."""
        def change() -> OaiObject:
            obj = self._editable(oaio_id)
            if root_path:
                obj.root_path = str(resolve_placeholders(root_path))
                obj.client_values = {**obj.client_values, "_root_path": root_path}
            root = self._sync.files_root(obj)
            if not root.is_dir():
                raise InvalidValue(f"folder {root} does not exist")
            kept = [p for p, f in obj.files.items() if f.get("refused")]   # server links not created here
            obj.client_values = {**obj.client_values, "_file_paths": sorted({*list_entries(root), *kept})}
            obj.client_stamp = self._stamp(stamp, obj.client_stamp)
            self.state.save(obj)
            return obj
        return self._local_change("update_folder", change)

    # --- removing ---
    def unregister_object(self, oaio_id: str, wipe_files: bool = False) -> str:
        """Delete the object (on the server at the next sync); returns "" or the error text.

        ``wipe_files`` deletes only ``client_root/filez/<oaio_id>/``; files in a folder the
        user chose (``root_path``) are never deleted.
        """
        def change() -> bool:
            obj = copy.deepcopy(self.state.get(oaio_id))
            if obj is None or obj.pending_delete:
                raise NotFound(f"object {oaio_id!r} is not registered on this device", {"oaio_id": oaio_id})
            if obj.server_version and not can_delete(obj.csh_access_right):
                raise Forbidden(f"access right {obj.csh_access_right!r} does not allow to delete {oaio_id!r}",
                                {"oaio_id": oaio_id, "access_right": obj.csh_access_right})
            if wipe_files:
                root = self._sync.files_root(obj)
                if is_inside(root, self.state.files_dir):
                    self.state.wipe_object_files(oaio_id)
                else:
                    log.info("unregister %s: files in the user folder %s are kept", oaio_id, root)
            if obj.server_version == 0:
                self.state.remove(oaio_id)     # never uploaded: nothing to tell the server
                return False
            obj.pending_delete = True
            self.state.save(obj)
            return True
        return self._queued_then_sync("unregister_object", oaio_id, change)

    def _queued_then_sync(self, what: str, oaio_id: str, change: Callable[[], bool]) -> str:
        """Apply a local change, then sync; returns the errors about ``oaio_id`` ("" when queued offline)."""
        before = self.error_message
        queued = self._call(what, change, None)
        if queued is None:
            return self._new_errors(before)
        if queued:
            self.sync_report = SyncReport()
            self.synchronize_with_server_if_online()
            return "\n\n".join(e for e in self.sync_report.errors if e.startswith(oaio_id + ":"))
        return ""

    def _new_errors(self, before: str) -> str:
        return self.error_message[len(before):].strip()

    # --- sharing (online only) ---
    def upsert_subscription(self, oaio_id: str, user_name: str, access_right: str = "r") -> int:
        """Grant ``user_name`` a right (``"x"`` removes it); returns the subscription id, 0 on error.

        An object registered offline is uploaded first.
        """
        with self.state.locked():
            unsent = (obj := self.state.get(oaio_id)) is not None and obj.server_version == 0
        if unsent:
            self.synchronize_with_server_if_online()
        return self._call("upsert_subscription", lambda: self.api.set_subscription(oaio_id, user_name, access_right),
                          0)

    def unsubscribe(self, oaio_id: str, user_name: str) -> str:
        """Remove ``user_name``'s subscription; for oneself the object also leaves this device."""
        before = self.error_message

        def call() -> bool:
            self.api.set_subscription(oaio_id, user_name, NO_ACCESS_RIGHT)
            obj = self.state.get(oaio_id)
            if user_name == self._username and obj is not None:
                report = SyncReport()
                self._sync.forget(obj, report)      # keeps un-pushed edits as a conflict copy
                self.sync_report = report
            return True
        self._call("unsubscribe", call, False)
        return self._new_errors(before)

    def userz_access(self, oaio_id: str) -> list[dict[str, str]]:
        """Every user with their right to ``oaio_id`` (``"x"`` = none), sorted like the seed; [] on error."""
        def call() -> list[dict[str, str]]:
            rights: dict[str, str] = {}
            if oaio_id:
                try:
                    rights = {s["username"]: s["access_right"] for s in self.api.subscriptions(oaio_id)}
                except (NotFound, InvalidValue):
                    rights = {}
            users = dict.fromkeys([*self.api.users(), *rights])
            entries = [{"username": u, "access_right": rights.get(u, NO_ACCESS_RIGHT)} for u in users]
            return sorted(entries, key=userz_access_sort_key)
        return self._call("userz_access", call, [])

