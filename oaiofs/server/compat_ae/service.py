"""The seed client's object operations on top of the oaiofs services (same objects, rights, changes).

An ``OaiObject`` dict of the seed (exactly ten keys, see ``FIELDS``) maps to an
ordinary oaiofs object: ``client_values`` are its values, the ``client_stamp`` a
client sent is kept in :class:`~oaiofs.server.models_compat.CompatAeObject`
together with the oaiofs version it belongs to, and files attached through the
storage plugin (csh id ``Oaiofs``) are the object's files.

Reported stamp: the stored client stamp while the object is still at that
version, else the object's own stamp (a native change: REST, drive, tus). The
object stamp is kept ≥ every client stamp, so native stamps stay newer.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import ntpath
import posixpath
from typing import Any

from sqlalchemy import and_, delete, select
from sqlalchemy.orm import Session

from ... import protocol
from ...errors import AlreadyExists, Forbidden, Gone, InvalidValue, NotFound, VersionConflict
from .. import objects, subscriptions
from ..access import load_object
from ..models import FileEntry, OaiObject, Subscription, Token, User
from ..models_compat import CompatAeObject, CompatAeStagedFile

log = logging.getLogger(__name__)

STORAGE_ID = "Oaiofs"          # csh id of oaiofs.compat.ae_storage.OaiofsApi
FIELDS = ("oaio_id", "client_stamp", "server_stamp", "client_values", "server_values", "csh_id", "username",
          "device_id", "app_id", "csh_access_right")
FILES_KEY, ROOT_KEY = "_file_paths", "_root_path"
MAX_FUTURE_S = 3600          # client stamps may run ahead of the server clock by this much (the client allows 69 s)


# --- validation of what a client sends ---
def check_id(oaio_id: Any) -> str:
    """A client-made id (the seed rule makes long ones: up to 255 UTF-8 bytes are accepted), else 422."""
    return protocol.validate_oaio_id(oaio_id)


def _escapes(path: str) -> bool:
    parts = path.replace("\\", "/").split("/")
    return (posixpath.isabs(path) or ntpath.isabs(path) or path.startswith("~") or ".." in parts
            or bool(ntpath.splitdrive(path)[0]))


def check_values(values: Any) -> dict[str, Any]:
    """Seed types of the reserved keys, and no ``_root_path``/``_file_paths`` escaping (absolute, ``..``)."""
    protocol.validate_values(values)
    root = values.get(ROOT_KEY)
    if root is not None and _escapes(root):
        raise InvalidValue("_root_path must be relative (a placeholder path like '{usr}/photos'), without '..'",
                           {ROOT_KEY: root[:200]})
    for path in values.get(FILES_KEY) or []:
        if not path or _escapes(path):
            raise InvalidValue("_file_paths entries must be relative paths without '..'", {"path": path[:200]})
        protocol.normalize_file_path(path)
    return values


def check_object_dict(body: Any) -> dict[str, Any]:
    """A seed ``OaiObject`` dict (unknown keys are ignored; the ones used must have the right types)."""
    if not isinstance(body, dict):
        raise InvalidValue("body must be an OaiObject JSON object")
    oaio_id = check_id(body.get("oaio_id"))
    stamp = body.get("client_stamp")
    if not isinstance(stamp, str) or not protocol.is_stamp(stamp):
        raise InvalidValue("client_stamp must be 20 digits newer than the oldest sync stamp",
                           {"client_stamp": str(stamp)[:40]})
    latest = protocol.now_stamp(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=MAX_FUTURE_S))
    if stamp > latest:               # it would become the object stamp: every later stamp must be newer
        raise InvalidValue(f"client_stamp is more than {MAX_FUTURE_S} s ahead of the server clock",
                           {"client_stamp": stamp, "server_stamp": protocol.now_stamp()})
    values = body.get("client_values")
    if not isinstance(values, dict):
        raise InvalidValue("client_values must be a JSON object")
    check_values(values)
    for key in ("csh_id", "device_id", "app_id"):
        if body.get(key) is not None and (not isinstance(body[key], str) or len(body[key]) > 255):
            raise InvalidValue(f"{key} must be a string of at most 255 characters")
    return dict(body, oaio_id=oaio_id)


# --- reporting ---
def reported_stamp(obj_version: int, obj_stamp: str, compat_stamp: str | None, compat_version: int | None) -> str:
    """The stamp the seed client sees (see the module docstring)."""
    if compat_stamp is not None and compat_version == obj_version:
        return compat_stamp
    return obj_stamp


def _report(oaio_id: str, values: dict[str, Any], stamp: str, owner: str, right: str, app_id: str,
            device_id: str, csh_id: str | None, files: list[str]) -> dict[str, Any]:
    values = dict(values)
    if files:                                      # files stored in oaiofs are fetched through the plugin
        values[FILES_KEY] = files
        csh_id = STORAGE_ID
    elif csh_id in (None, STORAGE_ID) and values.get(FILES_KEY):
        values[FILES_KEY] = []                     # never report a file storage cannot serve
    return {"oaio_id": oaio_id, "client_stamp": stamp, "server_stamp": stamp, "client_values": values,
            "server_values": values, "csh_id": csh_id, "username": owner, "device_id": device_id,
            "app_id": app_id, "csh_access_right": right}


def stampz(db: Session, user: User) -> list[dict[str, Any]]:
    """Every non-deleted object ``user`` may read, as seed ``OaiObject`` dicts (three queries)."""
    visible = and_(Subscription.object_id == OaiObject.id, Subscription.user_id == user.id)
    rows = db.execute(
        select(OaiObject.id, OaiObject.oaio_id, OaiObject.values_json, OaiObject.version, OaiObject.stamp,
               OaiObject.app_id, OaiObject.device_id, User.username, Subscription.access_right,
               CompatAeObject.client_stamp, CompatAeObject.version.label("compat_version"), CompatAeObject.csh_id)
        .join(Subscription, visible).join(User, User.id == OaiObject.owner_id)
        .outerjoin(CompatAeObject, CompatAeObject.object_id == OaiObject.id)
        .where(OaiObject.deleted.is_(None)).order_by(OaiObject.oaio_id)).all()
    files: dict[int, list[str]] = {row.id: [] for row in rows}
    for object_id, path in db.execute(
            select(FileEntry.object_id, FileEntry.path).join(OaiObject, OaiObject.id == FileEntry.object_id)
            .join(Subscription, visible)
            .where(OaiObject.deleted.is_(None), FileEntry.kind == objects.FILE).order_by(FileEntry.path)):
        if object_id in files:
            files[object_id].append(path)
    return [_report(row.oaio_id, json.loads(row.values_json or "{}"),
                    reported_stamp(row.version, row.stamp, row.client_stamp, row.compat_version),
                    row.username, row.access_right, row.app_id, row.device_id, row.csh_id, files[row.id])
            for row in rows]


def current_stamp_of(db: Session, obj: OaiObject) -> str:
    """The stamp :func:`stampz` reports for ``obj``."""
    row = db.get(CompatAeObject, obj.id)
    return reported_stamp(obj.version, obj.stamp, row.client_stamp if row else None, row.version if row else None)


# --- changes ---
def _attach_files(db: Session, user: User, obj: OaiObject, stamp: str, wanted: list[str], *, replace: bool) -> None:
    """Make the object's files those of ``wanted``: staged uploads of ``stamp`` are committed, others removed."""
    staged = {row.path: row for row in db.scalars(
        select(CompatAeStagedFile).where(CompatAeStagedFile.oaio_id == obj.oaio_id, CompatAeStagedFile.stamp == stamp,
                                         CompatAeStagedFile.user_id == user.id).order_by(CompatAeStagedFile.id))}
    current = {f.path: f for f in obj.files if f.kind == objects.FILE}
    paths = [protocol.normalize_file_path(p.replace("\\", "/")) for p in wanted]
    for path in paths:
        row = staged.get(path)
        if row is None:
            if path in current:
                continue
            raise InvalidValue(f"{path!r} was not deployed through the storage plugin for stamp {stamp}",
                               {"path": path, "stamp": stamp})
        entry = current.get(path)
        if entry is not None and entry.sha256 == row.sha256:
            continue
        objects.commit_file(db, user, obj, path, blob_key=row.blob_key, size=row.size, sha256=row.sha256,
                            mtime=None, base_version=None)
    if replace:
        for path in sorted(set(current) - set(paths)):
            if any(f.path == path for f in obj.files):
                objects.delete_path(db, user, obj, path)
    db.execute(delete(CompatAeStagedFile).where(CompatAeStagedFile.oaio_id == obj.oaio_id,
                                                CompatAeStagedFile.stamp == stamp,
                                                CompatAeStagedFile.user_id == user.id))


def _remember(db: Session, obj: OaiObject, client_stamp: str, csh_id: str | None) -> None:
    if client_stamp > obj.stamp:          # native stamps after this one must be newer than the client's
        obj.stamp = client_stamp
    row = db.get(CompatAeObject, obj.id)
    if row is None:
        db.add(CompatAeObject(object_id=obj.id, client_stamp=client_stamp, version=obj.version, csh_id=csh_id))
    else:
        row.client_stamp, row.version, row.csh_id = client_stamp, obj.version, csh_id
    db.flush()


def _files_wanted(body: dict[str, Any]) -> list[str] | None:
    """The files to attach, or None when the object's files live in another storage (csh id not ``Oaiofs``)."""
    if body.get("csh_id") != STORAGE_ID:
        return None
    return list(body["client_values"].get(FILES_KEY) or [])


def register(db: Session, user: User, body: dict[str, Any], ctx: dict[str, str]) -> dict[str, Any]:
    """``register/``: a new object owned by the session user, with the client's id, values and stamp."""
    body = check_object_dict(body)
    oaio_id, stamp = body["oaio_id"], body["client_stamp"]
    existing = db.scalar(select(OaiObject).where(OaiObject.oaio_id == oaio_id))
    if existing is not None:
        row = db.get(CompatAeObject, existing.id)
        if (existing.owner_id == user.id and existing.deleted is None and row is not None
                and row.client_stamp == stamp):
            return body                  # a repeated register whose first answer was lost
        raise AlreadyExists(f"object {oaio_id!r} already exists", {"oaio_id": oaio_id})
    obj = objects.create_object(db, user, body["client_values"], oaio_id,
                                app_id=body.get("app_id") or ctx.get("app", ""),
                                device_id=body.get("device_id") or ctx.get("device", ""), stamp=stamp)
    wanted = _files_wanted(body)
    if wanted:
        _attach_files(db, user, obj, stamp, wanted, replace=False)
    _remember(db, obj, stamp, body.get("csh_id"))
    return body


def upload(db: Session, user: User, body: dict[str, Any]) -> dict[str, Any]:
    """``upload/``: replace values (and plugin files) with the client's newer version; stale stamps get 409."""
    body = check_object_dict(body)
    oaio_id, stamp = body["oaio_id"], body["client_stamp"]
    obj, _right = load_object(db, user, oaio_id, "update", for_update=True)
    current = current_stamp_of(db, obj)
    if stamp <= current:
        raise VersionConflict(f"client_stamp {stamp} is not newer than the server's {current}",
                              {"oaio_id": oaio_id, "current_stamp": current, "client_stamp": stamp})
    objects.update_values(db, user, obj, body["client_values"], mode="replace")
    wanted = _files_wanted(body)
    if wanted is not None:
        _attach_files(db, user, obj, stamp, wanted, replace=True)
    _remember(db, obj, stamp, body.get("csh_id"))
    return body


def delete_object(db: Session, user: User, body: Any) -> dict[str, Any]:
    """``delete/``: tombstone (rights C or D)."""
    oaio_id = check_id(body.get("oaio_id") if isinstance(body, dict) else None)
    obj, _right = load_object(db, user, oaio_id, "delete", for_update=True)
    objects.delete_object(db, user, obj)
    return {"oaio_id": oaio_id, "message": "deleted"}


def subscribe(db: Session, user: User, body: Any) -> dict[str, Any]:
    """``subscribe/``: ``{"oaio_id", "username", "access_right"}`` → ``{"Pid", "message"}``."""
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("username", "access_right")):
        raise InvalidValue("body must be {'oaio_id', 'username', 'access_right'} strings")
    result = subscriptions.set_subscription(db, user, check_id(body.get("oaio_id")), body["username"],
                                            body["access_right"])
    return {"Pid": result["pid"], "message": f"{body['username']} has right {result['access_right']}"}


def user_subz(db: Session, user: User, oaio_id: str) -> list[dict[str, str]]:
    """Every registered user with their right to ``oaio_id`` (``x``: none; unknown ids: all ``x``)."""
    rights: dict[str, str] = {}
    try:
        rights = {e["username"]: e["access_right"] for e in subscriptions.list_subscriptions(db, user, oaio_id)}
    except (NotFound, InvalidValue, Forbidden, Gone):     # unknown, hostile or deleted id: nobody has a right
        pass
    names = db.scalars(select(User.username).order_by(User.username))
    entries = [{"username": name, "access_right": rights.get(name, protocol.NO_ACCESS_RIGHT)} for name in names]
    return sorted(entries, key=protocol.userz_access_sort_key)


def wipe_user(db: Session, admin: User, body: Any) -> dict[str, Any]:
    """``wipe_user/`` (admins only): tombstone the user's objects, drop their subscriptions and sessions."""
    if not admin.is_admin:
        raise Forbidden("only an administrator may wipe a user")
    name = body.get("Uid") if isinstance(body, dict) else None
    target = db.scalar(select(User).where(User.username == name)) if isinstance(name, str) else None
    if target is None:
        raise NotFound(f"user {str(name)[:150]!r} not found", {"username": str(name)[:150]})
    owned = list(db.scalars(select(OaiObject).where(OaiObject.owner_id == target.id, OaiObject.deleted.is_(None))))
    for obj in owned:
        objects.delete_object(db, target, obj)
    for sub in list(db.scalars(select(Subscription).where(Subscription.user_id == target.id))):
        subscribed = db.get(OaiObject, sub.object_id)
        if subscribed is not None and subscribed.owner_id != target.id:
            subscriptions._remove(db, admin, subscribed, target, sub)
    db.execute(delete(Token).where(Token.user_id == target.id))
    db.execute(delete(CompatAeStagedFile).where(CompatAeStagedFile.user_id == target.id))
    log.info("%s wiped user %s (%d objects)", admin.username, target.username, len(owned))
    return {"message": f"user {target.username} wiped: {len(owned)} objects deleted"}
