"""Objects over HTTP: register, get, update (merge/replace, base versions), delete, folders, listing."""
from __future__ import annotations

import concurrent.futures

import pytest
import requests

from tests.conftest import PASSWORD
from oaiofs import protocol
from oaiofs.client.api import quote_id
from oaiofs.errors import AlreadyExists, Gone, NotFound, TooLarge, VersionConflict

from tests.server.server_helpers import client, unique_id


def test_register_get_update_on_two_devices(live_server, make_user):
    alice = make_user("alice")
    laptop, phone = client(live_server, alice, "laptop"), client(live_server, alice, "phone")
    doc = laptop.create_object({"_name": "notes", "text": "hello"})
    oaio_id = doc["oaio_id"]
    assert doc["version"] == 1 and doc["access_right"] == "C" and doc["owner"] == alice
    assert doc["device_id"] == "laptop" and doc["app_id"] == "tests" and doc["files"] == []
    assert protocol.is_stamp(doc["stamp"]) and doc["deleted"] is None
    assert oaio_id.startswith("tests⫻") and "notes" in oaio_id        # seed-style id made by the server
    protocol.validate_oaio_id(oaio_id)

    seen = phone.get_object(oaio_id)
    assert seen["values"] == {"_name": "notes", "text": "hello"}
    updated = phone.update_values(oaio_id, {"text": "bye"}, base_version=1)
    assert updated["version"] == 2 and updated["stamp"] > doc["stamp"]
    assert laptop.get_object(oaio_id)["values"]["text"] == "bye"


def test_merge_versus_replace(live_server, make_user):
    api = client(live_server, make_user("alice"))
    oaio_id = api.create_object({"a": 1, "b": {"x": 1}}, unique_id())["oaio_id"]
    merged = api.update_values(oaio_id, {"b": {"y": 2}, "c": 3})
    assert merged["values"] == {"a": 1, "b": {"y": 2}, "c": 3}       # top-level keys are replaced
    replaced = api.update_values(oaio_id, {"only": True}, mode="replace")
    assert replaced["values"] == {"only": True} and replaced["version"] == 3


def test_stale_base_version_is_refused_and_changes_nothing(live_server, make_user):
    alice = make_user("alice")
    laptop, phone = client(live_server, alice, "laptop"), client(live_server, alice, "phone")
    oaio_id = laptop.create_object({"n": 0}, unique_id())["oaio_id"]
    laptop.update_values(oaio_id, {"n": 1}, base_version=1)
    with pytest.raises(VersionConflict) as info:
        phone.update_values(oaio_id, {"n": 99}, base_version=1)
    assert info.value.http_status == 409 and info.value.detail["current_version"] == 2
    with pytest.raises(VersionConflict):
        phone.delete_object(oaio_id, base_version=1)
    doc = phone.get_object(oaio_id)
    assert doc["values"] == {"n": 1} and doc["version"] == 2 and doc["deleted"] is None


def test_concurrent_updates_lose_nothing(live_server, make_user):
    alice = make_user("alice")
    api = client(live_server, alice)
    oaio_id = api.create_object({}, unique_id())["oaio_id"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client(live_server, alice, f"d{i % 4}").update_values(oaio_id, {f"k{i}": i}),
                      range(24)))
    doc = api.get_object(oaio_id)
    assert doc["values"] == {f"k{i}": i for i in range(24)} and doc["version"] == 25


def test_explicit_id_duplicate_and_stamp(live_server, make_user):
    api = client(live_server, make_user("alice"))
    oaio_id = unique_id("ünï cödé ⁄ id")
    doc = api.create_object({"v": 1}, oaio_id, stamp="20300101000000000001")
    assert doc["oaio_id"] == oaio_id and doc["stamp"] == "20300101000000000001"
    with pytest.raises(AlreadyExists):
        api.create_object({"v": 2}, oaio_id)
    assert api.get_object(oaio_id)["values"] == {"v": 1}


def test_delete_is_a_tombstone(live_server, make_user):
    api = client(live_server, make_user("alice"))
    oaio_id = api.create_object({"v": 1}, unique_id())["oaio_id"]
    doc = api.delete_object(oaio_id, base_version=1)
    assert doc["deleted"] is not None and doc["version"] == 2
    with pytest.raises(Gone):
        api.get_object(oaio_id)
    with pytest.raises(Gone):
        api.update_values(oaio_id, {"v": 2})
    with pytest.raises(AlreadyExists):            # the id stays taken
        api.create_object({}, oaio_id)
    objects, _cursor = api.list_objects()
    assert oaio_id not in [o["oaio_id"] for o in objects]


def test_folders_move_and_delete(live_server, make_user):
    api = client(live_server, make_user("alice"))
    oaio_id = api.create_object({}, unique_id())["oaio_id"]
    doc = api.make_dir(oaio_id, "photos/2024")
    assert [(f["path"], f["kind"]) for f in doc["files"]] == [("photos", "dir"), ("photos/2024", "dir")]
    with pytest.raises(AlreadyExists):
        api.make_dir(oaio_id, "photos")
    doc = api.move(oaio_id, "photos", "pictures")
    assert [f["path"] for f in doc["files"]] == ["pictures", "pictures/2024"]
    with pytest.raises(NotFound):
        api.move(oaio_id, "photos", "x")
    api.make_dir(oaio_id, "empty")
    with pytest.raises(AlreadyExists):
        api.move(oaio_id, "empty", "pictures")
    with pytest.raises(VersionConflict):
        api.delete_file(oaio_id, "pictures", base_version=1)
    doc = api.delete_file(oaio_id, "pictures")
    assert [f["path"] for f in doc["files"]] == ["empty"]
    with pytest.raises(NotFound):
        api.delete_file(oaio_id, "pictures")


def test_file_paths_with_unicode_and_spaces_round_trip(live_server, make_user):
    api = client(live_server, make_user("alice"))
    oaio_id = api.create_object({}, unique_id())["oaio_id"]
    name = "Fotos ünd Bilder/a#b?c%d & e"
    doc = api.make_dir(oaio_id, name)
    assert name in [f["path"] for f in doc["files"]]
    after = api.delete_file(oaio_id, name)["files"]
    untimed = [{k: v for k, v in f.items() if k not in ("mtime", "mtime_ns")} for f in after]
    assert untimed == [{k: v for k, v in doc["files"][0].items() if k not in ("mtime", "mtime_ns")}
                       | {"path": "Fotos ünd Bilder"}]
    assert after[0]["mtime_ns"] >= doc["files"][0]["mtime_ns"]     # a name left the folder: its mtime moved


def test_listing_returns_every_visible_object_with_files_rights_and_cursor(live_server, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    a, b = client(live_server, alice), client(live_server, bob)
    ids = [a.create_object({"i": i}, unique_id())["oaio_id"] for i in range(5)]
    a.make_dir(ids[0], "d")
    a.set_subscription(ids[1], bob, "U")
    mine = b.create_object({}, unique_id())["oaio_id"]
    objects, cursor = b.list_objects()
    by_id = {o["oaio_id"]: o for o in objects}
    assert set(by_id) == {ids[1], mine}
    assert by_id[ids[1]]["access_right"] == "U" and by_id[mine]["access_right"] == "C"
    objects, _ = a.list_objects()
    assert {o["oaio_id"] for o in objects} == set(ids)
    assert [f["path"] for f in {o["oaio_id"]: o for o in objects}[ids[0]]["files"]] == ["d"]
    # listing then following the feed leaves no gap
    a.update_values(ids[1], {"after": True})
    events, _ = b.changes(cursor)
    assert [(e["type"], e["subject"]) for e in events] == [(protocol.EVENT_UPDATED, ids[1])]


def test_values_size_limit(live_server, make_user):
    api = client(live_server, make_user("alice"))
    oaio_id = api.create_object({"small": 1}, unique_id())["oaio_id"]
    with pytest.raises(TooLarge):
        api.update_values(oaio_id, {"big": "x" * (protocol.MAX_VALUES_BYTES + 10)})
    with pytest.raises(TooLarge):      # fits the request limit, but the merged values do not
        api.update_values(oaio_id, {"half": "y" * (protocol.MAX_VALUES_BYTES - 100)})
        api.update_values(oaio_id, {"other": "z" * (protocol.MAX_VALUES_BYTES - 100)})
    doc = api.get_object(oaio_id)
    assert "big" not in doc["values"] and "other" not in doc["values"]


def test_raw_wire_format(live_server, make_user):
    alice = make_user("alice")
    oaio_id = unique_id()
    resp = requests.post(live_server.url + protocol.PATH_OBJECTS, auth=(alice, PASSWORD), timeout=10,
                         json={"values": {"a": 1}, "oaio_id": oaio_id})
    assert resp.status_code == 201 and resp.headers["content-type"] == "application/json"
    assert set(resp.json()) == set(protocol.ObjectDoc.__annotations__)
    resp = requests.patch(live_server.url + protocol.PATH_OBJECT.format(oaio_id=quote_id(oaio_id)),
                          auth=(alice, PASSWORD), json={"values": {"b": 2}, "mode": "merge", "base_version": 5},
                          timeout=10)
    assert resp.status_code == 409
    assert resp.json()["error"] == "version_conflict" and resp.json()["detail"]["current_version"] == 1
    assert resp.json()["message"]


def test_longest_allowed_paths_work(live_server, make_user):
    import secrets
    api = client(live_server, make_user("alice"))
    oaio_id = api.create_object({}, unique_id())["oaio_id"]
    names = [secrets.token_hex(127) for _ in range(16)]            # 254-byte random names
    path = "/".join(names)[: protocol.MAX_PATH_BYTES].rstrip("/")
    assert len(path.encode()) > 4000
    doc = api.make_dir(oaio_id, path)
    assert path in [f["path"] for f in doc["files"]]
    moved = path.rsplit("/", 1)[0] + "/" + "m" * 10
    assert moved in [f["path"] for f in api.move(oaio_id, path, moved)["files"]]
