"""ApiClient file helpers against the real server: put/get/move/delete with versions and rights."""
from __future__ import annotations

import io

import pytest
import requests

from tests.conftest import PASSWORD
from oaiofs import protocol
from oaiofs.errors import AlreadyExists, Forbidden, InvalidValue, NotFound, VersionConflict

from tests.server.server_helpers import client, shared_with_bob, unique_id


def test_put_get_move_delete_with_versions(live_server, make_user):
    alice = make_user("alice")
    laptop, phone = client(live_server, alice, "laptop"), client(live_server, alice, "phone")
    oaio_id = laptop.create_object({}, unique_id())["oaio_id"]
    doc = laptop.put_file(oaio_id, "Fotos ü/a b.txt", b"first", base_version=0, mtime=1700000000.5)
    assert doc["version"] == 2 and doc["size"] == 5 and doc["mtime"] == 1700000000.5
    assert phone.get_file(oaio_id, "Fotos ü/a b.txt") == b"first"
    assert phone.get_file(oaio_id, "Fotos ü/a b.txt", start=1, end=3) == b"ir"
    with pytest.raises(VersionConflict):            # the file exists already
        phone.put_file(oaio_id, "Fotos ü/a b.txt", b"clash", base_version=0)
    phone.put_file(oaio_id, "Fotos ü/a b.txt", io.BytesIO(b"second"), base_version=2)
    with pytest.raises(VersionConflict):            # laptop's base is stale now
        laptop.put_file(oaio_id, "Fotos ü/a b.txt", b"lost?", base_version=2)
    with pytest.raises(VersionConflict):
        laptop.move(oaio_id, "Fotos ü/a b.txt", "b.txt", base_version=2)
    assert laptop.get_file(oaio_id, "Fotos ü/a b.txt") == b"second"

    laptop.put_file(oaio_id, "other.txt", b"other")
    with pytest.raises(AlreadyExists):
        laptop.move(oaio_id, "Fotos ü/a b.txt", "other.txt")
    doc = laptop.move(oaio_id, "Fotos ü/a b.txt", "other.txt", base_version=3, overwrite=True)
    assert [(f["path"], f["kind"]) for f in doc["files"]] == [("Fotos ü", "dir"), ("other.txt", "file")]
    assert laptop.get_file(oaio_id, "other.txt") == b"second"
    with pytest.raises(NotFound):
        laptop.get_file(oaio_id, "Fotos ü/a b.txt")
    doc = laptop.move(oaio_id, "Fotos ü", "Photos")
    assert [f["path"] for f in doc["files"]] == ["Photos", "other.txt"]
    doc = laptop.delete_file(oaio_id, "other.txt")
    assert [f["path"] for f in doc["files"]] == ["Photos"]
    with pytest.raises(InvalidValue):               # refused by the client before sending
        laptop.put_file(oaio_id, "../escape", b"x")


def test_read_only_and_strangers_cannot_touch_files(live_server, make_user):
    alice, bob, eve = make_user("alice"), make_user("bob"), make_user("eve")
    a, b, e = client(live_server, alice), client(live_server, bob), client(live_server, eve)
    oaio_id = a.create_object({}, unique_id())["oaio_id"]
    a.put_file(oaio_id, "f.txt", b"data")
    a.set_subscription(oaio_id, bob, "r")
    assert b.get_file(oaio_id, "f.txt") == b"data"
    for attempt in (lambda: b.put_file(oaio_id, "f.txt", b"evil"), lambda: b.put_file(oaio_id, "new.txt", b"x"),
                    lambda: b.delete_file(oaio_id, "f.txt"), lambda: b.move(oaio_id, "f.txt", "g.txt")):
        with pytest.raises(Forbidden):
            attempt()
    for attempt in (lambda: e.get_file(oaio_id, "f.txt"), lambda: e.put_file(oaio_id, "f.txt", b"evil"),
                    lambda: e.delete_file(oaio_id, "f.txt")):
        with pytest.raises(NotFound):
            attempt()
    doc = a.get_object(oaio_id)
    assert [f["path"] for f in doc["files"]] == ["f.txt"] and doc["version"] == 2
    assert a.get_file(oaio_id, "f.txt") == b"data"


def test_file_uploads_reach_the_feed(live_server, make_user):
    s = shared_with_bob(live_server, make_user)
    s.a.put_file(s.oaio_id, "d/e/f.bin", bytes(range(256)) * 100)
    s.a.delete_file(s.oaio_id, "d")
    events, _ = s.b.changes(s.cursor)
    assert [e["type"] for e in events] == [protocol.EVENT_UPDATED] * 2
    assert events[0]["data"]["changed_files"] == ["d", "d/e", "d/e/f.bin"]
    assert events[1]["data"]["removed_files"] == ["d", "d/e", "d/e/f.bin"]


def test_relogin_rewinds_a_file_body(live_server, make_user):
    alice = make_user("alice")
    api = client(live_server, alice)
    oaio_id = api.create_object({}, unique_id())["oaio_id"]
    requests.post(live_server.url + protocol.PATH_LOGOUT, headers={"Authorization": f"Bearer {api.token}"},
                  timeout=10).raise_for_status()
    body = io.BytesIO(b"payload after re-login")
    api.put_file(oaio_id, "x.txt", body)
    assert api.get_file(oaio_id, "x.txt") == b"payload after re-login"
    assert requests.get(live_server.url + protocol.PATH_WHOAMI, auth=(alice, PASSWORD), timeout=10).ok
