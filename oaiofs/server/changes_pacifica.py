"""``GET /api/v1/changes?format=pacifica``: change events as Pacifica Notifications CloudEvents.

``pacifica.downloader.Downloader.cloudevent()`` (seed 004) reads ``data`` as a flat
list of metadata records and downloads those with ``destinationTable == "Files"``
through a cart. Each oaiofs event becomes one such event whose ``data`` lists
the files it concerns, as they are *now*:

* ``created``/``subscribed``: every file of the object;
* ``updated``: the changed files that still exist (folders and removed files are
  not file records);
* ``deleted``/``unsubscribed``, and objects the caller can no longer read: ``[]``.

A record is ``{"destinationTable": "Files", "_id": "<oaio_id>/<path>" (the cart id),
"subdir", "name", "size", "hashtype": "sha256", "hashsum"}``; ``subdir`` + ``name``
is the path inside the object, so the downloader writes ``<location>/<filename>/<path>``.
"""
from __future__ import annotations

import posixpath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import protocol
from .models import FileEntry, OaiObject, Subscription

FORMATS = ("cloudevents", "pacifica")
_ALL_FILES = (protocol.EVENT_CREATED, protocol.EVENT_SUBSCRIBED)


def file_record(oaio_id: str, path: str, size: int, sha256: str) -> dict[str, Any]:
    """One Pacifica ``Files`` metadata record of an attached file."""
    subdir, name = posixpath.split(path)
    return {"destinationTable": "Files", "_id": protocol.cart_file_id(oaio_id, path), "subdir": subdir,
            "name": name, "size": size, "hashtype": "sha256", "hashsum": sha256}


def _readable_files(db: Session, user_id: int, oaio_ids: set[str]) -> dict[str, dict[str, tuple[int, str]]]:
    """``{oaio_id: {path: (size, sha256)}}`` of the files of the objects ``user_id`` can read now."""
    if not oaio_ids:
        return {}
    rows = db.execute(
        select(OaiObject.oaio_id, FileEntry.path, FileEntry.size, FileEntry.sha256)
        .join(FileEntry, FileEntry.object_id == OaiObject.id)
        .join(Subscription, (Subscription.object_id == OaiObject.id) & (Subscription.user_id == user_id))
        .where(OaiObject.oaio_id.in_(oaio_ids), OaiObject.deleted.is_(None), FileEntry.kind == "file",
               FileEntry.sha256.is_not(None)))
    files: dict[str, dict[str, tuple[int, str]]] = {}
    for oaio_id, path, size, sha256 in rows:
        files.setdefault(oaio_id, {})[path] = (size, sha256 or "")     # never empty: the query skips NULL
    return files


def to_pacifica(db: Session, user_id: int, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same events with ``data`` replaced by the list of ``Files`` records (see the module docstring)."""
    files = _readable_files(db, user_id, {e["subject"] for e in events})
    out = []
    for event in events:
        oaio_id, data = event["subject"], event.get("data") or {}
        current = files.get(oaio_id, {})
        if event["type"] in _ALL_FILES:
            paths = sorted(current)
        elif event["type"] == protocol.EVENT_UPDATED:
            paths = sorted(p for p in set(data.get("changed_files") or ()) if p in current)
        else:
            paths = []
        out.append(dict(event, data=[file_record(oaio_id, p, *current[p]) for p in paths]))
    return out
