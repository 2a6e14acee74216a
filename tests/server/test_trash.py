"""The server trash through the API (issue 17): list, restore paths and objects, rights, empty,
retention expiry with the blob collector, hostile input, and a seeded random delete/restore
sequence against a reference dict."""
from __future__ import annotations

import random

import pytest
import requests

from oaiofs.client import trash_api
from oaiofs.errors import Conflict, Forbidden, Gone, InvalidValue, NotFound
from tests.conftest import PASSWORD, wait_until

from .server_helpers import client, unique_id
from .test_blob_gc import gc, key, stored_keys

pytestmark = pytest.mark.timeout(240)


def files_of(doc: dict) -> dict[str, tuple]:
    return {f["path"]: (f["kind"], f["sha256"], f["mode"], f["mtime_ns"], f.get("target"))
            for f in doc["files"]}


def test_path_delete_restore_rights_and_hostile_input(live_server, make_user):
    owner, upd, reader, stranger = (make_user(n) for n in ("towner", "tupd", "tread", "tstranger"))
    api, api_u, api_r, api_x = (client(live_server, u) for u in (owner, upd, reader, stranger))
    oid = api.create_object({"_name": "Trashy"}, oaio_id=unique_id())["oaio_id"]
    api.set_subscription(oid, upd, "U")
    api.set_subscription(oid, reader, "r")
    api.put_file(oid, "docs/a.txt", b"alpha", mtime_ns=1_600_000_000_123_456_789, mode=0o600)
    api.put_file(oid, "docs/sub/b.bin", b"\x00beta" * 100)
    api.make_dir(oid, "docs/empty")
    api.request("PUT", f"/api/v1/objects/{oid}/links/docs/link", json={"target": "a.txt"})
    api.request("PATCH", f"/api/v1/objects/{oid}/files/docs", json={"mode": 0o750, "mtime_ns": 1_500_000_000_000_000_000})
    before = files_of(api.get_object(oid))
    docs_before = {p: v for p, v in before.items() if p.startswith("docs")}

    # a U user removes the folder recursively; it is in everyone's trash listing
    api_u.delete_file(oid, "docs")
    assert not [p for p in files_of(api.get_object(oid)) if p.startswith("docs")]
    items = trash_api.list_trash(api_r, oid)["items"]
    assert [(i["path"], i["entry_kind"], i["deleted_by"], i["files"]) for i in items] == [("docs", "dir", upd, 2)]
    assert items[0]["size"] == 5 + 500 and items[0]["expires"] > items[0]["deleted"]
    assert any(i["id"] == items[0]["id"] for i in trash_api.list_trash(api_u)["items"])
    with pytest.raises(NotFound):
        trash_api.list_trash(api_x, oid)                                # strangers: 404 as everywhere
    assert all(i["oaio_id"] != oid for i in trash_api.list_trash(api_x)["items"])

    # rights: r cannot restore; hostile input is refused precisely and changes nothing
    with pytest.raises(Forbidden):
        trash_api.restore(api_r, oid, "docs")
    with pytest.raises(NotFound):
        trash_api.restore(api_x, oid, "docs")
    with pytest.raises(NotFound):
        trash_api.restore(api, oid, "never/deleted.txt")
    with pytest.raises(NotFound):
        trash_api.restore(api, oid, item_id=10 ** 9)
    for bad in ("../docs", "/docs", "docs/../x", "", "a\x00b"):
        with pytest.raises(InvalidValue):
            trash_api.restore(api, oid, bad)
    s = requests.Session()
    s.auth = (owner, PASSWORD)
    url = live_server.url + f"/api/v1/objects/{oid}/trash/restore"
    for body in ({"id": "1"}, {"id": -1}, {"path": 5}, {"what": 1}, [1]):
        r = s.post(url, json=body)
        assert r.status_code == 422 and r.json()["error"] == "invalid_value", (body, r.text)
    r = s.post(live_server.url + "/api/v1/objects/..%2F..%2Fetc/trash/restore", json={})
    assert r.status_code in (404, 422) and "error" in r.json()
    with pytest.raises(Conflict):
        trash_api.restore(api, oid)                                     # the object is not deleted
    assert trash_api.list_trash(api, oid)["items"] == items

    # a part of the deleted folder comes back alone (with its parent's metadata), then the rest
    out = trash_api.restore(api_u, oid, "docs/sub/b.bin")
    assert out["restored_as"] == "docs/sub/b.bin"
    now = files_of(out["object"])
    assert now["docs/sub/b.bin"] == docs_before["docs/sub/b.bin"] and now["docs"][2] == 0o750
    assert trash_api.list_trash(api, oid)["items"][0]["files"] == 1
    out = trash_api.restore(api_u, oid, "docs")              # docs exists again: restored beside it
    assert out["restored_as"].startswith("docs (restored ") and "/" not in out["restored_as"]
    beside = out["restored_as"]
    now = files_of(api.get_object(oid))
    for path, value in docs_before.items():
        if path not in ("docs", "docs/sub", "docs/sub/b.bin"):
            assert now[beside + path[4:]] == value, path
    assert now[beside][2:4] == docs_before["docs"][2:4]
    assert api.get_file(oid, beside + "/a.txt") == b"alpha"
    assert trash_api.list_trash(api, oid)["items"] == []
    with pytest.raises(NotFound):
        trash_api.restore(api, oid, "docs")                             # nothing left in the trash

    # a file deleted twice: the newest deletion comes back; by id the older one
    api.put_file(oid, "x.txt", b"one")
    api.delete_file(oid, "x.txt")
    api.put_file(oid, "x.txt", b"two")
    api.delete_file(oid, "x.txt")
    older = [i for i in trash_api.list_trash(api, oid)["items"] if i["path"] == "x.txt"][-1]
    trash_api.restore(api, oid, "x.txt")
    assert api.get_file(oid, "x.txt") == b"two"
    out = trash_api.restore(api, oid, item_id=older["id"])
    assert api.get_file(oid, out["restored_as"]) == b"one" and out["restored_as"].startswith("x (restored ")

    # a file where a parent folder must be: 409 conflict, nothing restored
    api.put_file(oid, "p/q.txt", b"q")
    api.delete_file(oid, "p")
    api.put_file(oid, "p", b"now a file")
    with pytest.raises(Conflict):
        trash_api.restore(api, oid, "p/q.txt")
    assert api.get_file(oid, "p") == b"now a file"

    # empty: the creator only
    with pytest.raises(Forbidden):
        trash_api.empty_trash(api_u, oid)
    assert trash_api.empty_trash(api_u) == 0                            # U's own objects: none
    assert trash_api.list_trash(api, oid)["items"]
    assert trash_api.empty_trash(api, oid) >= 1
    assert trash_api.list_trash(api, oid)["items"] == []


def test_object_delete_and_restore(live_server, make_user):
    owner, deleter, upd = make_user("oowner"), make_user("odel"), make_user("oupd")
    api, api_d, api_u = (client(live_server, u) for u in (owner, deleter, upd))
    oid = api.create_object({"_name": "Whole", "k": 1}, oaio_id=unique_id())["oaio_id"]
    api.set_subscription(oid, deleter, "D")
    api.set_subscription(oid, upd, "U")
    api.put_file(oid, "a/b.txt", b"bee")
    before = api.get_object(oid)
    _events, cursor = api_u.changes(0)
    api_d.delete_object(oid)
    with pytest.raises(Gone):
        api.get_object(oid)
    item = [i for i in trash_api.list_trash(api_u)["items"] if i["oaio_id"] == oid]
    assert [(i["kind"], i["deleted_by"], i["name"], i["object_deleted"]) for i in item] == \
        [("object", deleter, "Whole", True)]
    assert trash_api.list_trash(api_u, oid)["items"] == item
    with pytest.raises(Forbidden):
        trash_api.restore(api_u, oid)                                    # objects: C or D
    with pytest.raises(Gone):
        trash_api.restore(api_u, oid, "a/b.txt")                         # restore the object first
    out = trash_api.restore(api_d, oid)
    doc = api.get_object(oid)
    assert out["object"]["deleted"] is None and doc["version"] > before["version"]
    assert files_of(doc) == files_of(before) and doc["values"] == before["values"]
    assert api.get_file(oid, "a/b.txt") == b"bee"
    assert sorted((s["username"], s["access_right"]) for s in api.subscriptions(oid)) == \
        sorted([(owner, "C"), (deleter, "D"), (upd, "U")])
    events, _ = api_u.changes(cursor)
    assert [e["type"].rsplit(".", 1)[-1] for e in events if e["data"]["oaio_id"] == oid][-2:] == ["deleted", "created"]
    assert any(o["oaio_id"] == oid for o in api_u.list_objects()[0])
    with pytest.raises(Conflict):
        trash_api.restore(api, oid)


def test_retention_expiry_purges_and_gc_frees_the_blobs(server_factory):
    server = server_factory(env={"OAIOFS_TRASH_RETENTION_S": "3600", "OAIOFS_PURGE_INTERVAL_S": "0.5",
                                 "OAIOFS_BLOB_GC_GRACE_S": "0"})
    user = server.add_user("retainer")
    api = client(server, user)
    oid = api.create_object({}, oaio_id=unique_id())["oaio_id"]
    gone_obj = api.create_object({}, oaio_id=unique_id())["oaio_id"]
    path_bytes, obj_bytes, kept = b"deleted path bytes\n", b"deleted object bytes\n", b"kept\n"
    api.put_file(oid, "d/f.txt", path_bytes)
    api.put_file(oid, "k.txt", kept)
    api.put_file(gone_obj, "g.txt", obj_bytes)
    api.delete_file(oid, "d")
    api.delete_object(gone_obj)
    # inside the retention the collector (grace 0, running every 0.5 s) keeps the trash's blobs
    assert {key(path_bytes), key(obj_bytes)} <= stored_keys(server)
    assert len(trash_api.list_trash(api)["items"]) == 2
    assert gc(server, "--grace", "0")[0] == set()
    assert {key(path_bytes), key(obj_bytes), key(kept)} <= stored_keys(server)
    # past it (the same data, served with a retention of 1 s): the purge drops the items and the
    # collector the bytes; the rest stays
    server.env["OAIOFS_TRASH_RETENTION_S"] = "1"
    server.restart()
    wait_until(lambda: stored_keys(server) == {key(kept)}, timeout=120, interval=0.5,
               message="expired trash purged and its blobs collected")
    assert trash_api.list_trash(api)["items"] == []
    with pytest.raises(NotFound):
        trash_api.restore(api, oid, "d")
    with pytest.raises(Gone):
        trash_api.restore(api, gone_obj)
    assert api.get_file(oid, "k.txt") == kept


def test_random_delete_restore_sequence_matches_a_model(live_server, make_user):
    """Seeded random puts, deletes (files and folders) and restores against a reference dict."""
    rng = random.Random(1717)
    user = make_user("trand")
    api = client(live_server, user)
    oid = api.create_object({}, oaio_id=unique_id())["oaio_id"]
    live: dict[str, bytes] = {}
    trashed: list[tuple[str, dict[str, bytes]]] = []      # (deleted root, {path: bytes}) newest last
    made: list[tuple[int, int]] = []                       # change counters (first, last) of each trashed entry
    changes = 0                                            # object changes so far (each one version)
    names = ["a.txt", "b.txt", "d/c.txt", "d/e/f.txt", "g/h.txt"]
    for step in range(40):
        action = rng.random()
        if action < 0.45 or not live:
            path = rng.choice(names)
            if any(p.startswith(path + "/") for p in live) or any(path.startswith(p + "/") for p in live):
                continue
            data = f"{path} {step}\n".encode()
            api.put_file(oid, path, data)
            live[path] = data
            changes += 1
        elif action < 0.75:
            path = rng.choice(sorted(live) + ["d", "g"])
            gone = {p: b for p, b in live.items() if p == path or p.startswith(path + "/")}
            folder = [f["path"] for f in api.get_object(oid)["files"]]
            if path not in folder:
                continue
            api.delete_file(oid, path)
            changes += 1
            for p in gone:
                del live[p]
            if path in ("d", "g"):     # a folder folds in the deletions under it just before (rm -r)
                expect, first = changes - 1, changes
                while trashed and made[-1][1] == expect and trashed[-1][0].startswith(path + "/"):
                    gone = {**trashed.pop()[1], **gone}
                    first = made.pop()[0]
                    expect = first - 1
            else:
                first = changes
            trashed.append((path, gone))
            made.append((first, changes))
        elif trashed:
            wanted = trashed[rng.randrange(len(trashed))][0]
            for j in range(len(trashed) - 1, -1, -1):      # the server takes the newest deletion holding it
                root, gone = trashed[j]
                part = {p: b for p, b in gone.items() if p == wanted or p.startswith(wanted + "/")}
                if root == wanted or part:
                    break
            existing = {f["path"] for f in api.get_object(oid)["files"]}
            dst = trash_api.restore(api, oid, wanted)["restored_as"]
            changes += 1
            assert (dst == wanted) == (wanted not in existing), (wanted, dst)
            for p, b in part.items():
                live[dst + p[len(wanted):]] = b
            if root == wanted:
                trashed.pop(j)
                made.pop(j)
            else:
                trashed[j] = (root, {p: b for p, b in gone.items() if p not in part})
        doc = api.get_object(oid)
        on_server = {f["path"] for f in doc["files"] if f["kind"] == "file"}
        assert on_server == set(live), step
    for path, data in live.items():
        assert api.get_file(oid, path) == data
    listed = trash_api.list_trash(api, oid)["items"]
    assert sorted(i["path"] for i in listed) == sorted(r for r, _g in trashed)
