"""The version history against the real server: a seeded random model of commits, restores and values
changes; retention trimming with the collector keeping exactly the kept versions' blobs; hostile input."""
from __future__ import annotations

import hashlib
import random

import pytest
import requests

from oaiofs import protocol
from oaiofs.client import history
from oaiofs.errors import Forbidden, NotFound, VersionConflict
from tests.conftest import PASSWORD, wait_until

from .server_helpers import client, unique_id
from .test_blob_gc import gc, key, stored_keys

pytestmark = pytest.mark.timeout(300)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_seeded_random_commits_and_restores_match_a_reference(live_server, make_user):
    """Random puts, restores (with right and stale bases), values changes and values restores; after each
    step the listed history, the bytes of every kept version and the current file equal the reference."""
    alice, bob = make_user("alice"), make_user("bob")
    a, b = client(live_server, alice), client(live_server, bob)
    oid = a.create_object({"n": 0}, unique_id("hist"))["oaio_id"]
    a.set_subscription(oid, bob, "U")
    rng = random.Random(1717)
    paths = ["a.txt", "d/b.bin"]
    ref: dict[str, list[dict]] = {p: [] for p in paths}        # oldest first: {version, sha256, author, data}
    values_ref: list[dict] = [{"version": 1, "values": {"n": 0}, "author": alice}]
    for step in range(40):
        actor, name = (a, alice) if rng.random() < 0.5 else (b, bob)
        path = rng.choice(paths)
        kept = ref[path]
        roll = rng.random()
        if roll < 0.45 or not kept:
            data = rng.choice([b"alpha\n", b"beta\n" * 3, f"step {step}\n".encode()])
            doc = actor.put_file(oid, path, data)
            kept.append({"version": doc["version"], "sha256": sha(data), "author": name, "data": data,
                         "restored_from": None})
        elif roll < 0.7:
            old = rng.choice(kept)
            current = kept[-1]["version"]
            if rng.random() < 0.25:                          # a stale base: 409, nothing changes
                with pytest.raises(VersionConflict):
                    history.restore_file(actor, oid, path, old["version"], base_version=current - 1)
                continue
            doc = history.restore_file(actor, oid, path, old["version"], base_version=current)
            assert doc["sha256"] == old["sha256"] and doc["restored_from"] == old["version"]
            kept.append(dict(old, version=doc["version"], author=name, restored_from=old["version"]))
        elif roll < 0.85:
            values = {"n": step, "who": name}
            doc = actor.update_values(oid, values, mode="replace")
            values_ref.append({"version": doc["version"], "values": values, "author": name})
        else:
            old = rng.choice(values_ref)
            doc = history.restore_values(actor, oid, old["version"])
            values_ref.append({"version": doc["version"], "values": old["values"], "author": name})
        # compare with the reference
        for p in paths:
            if not ref[p]:
                continue
            listed = history.file_versions(b, oid, p)["versions"]
            assert [(v["version"], v["sha256"], v["author"], v["restored_from"]) for v in listed] == \
                [(r["version"], r["sha256"], r["author"], r["restored_from"]) for r in reversed(ref[p])]
            assert [v["current"] for v in listed] == [True] + [False] * (len(listed) - 1)
            assert a.get_file(oid, p) == ref[p][-1]["data"]
        pick = rng.choice(kept)
        assert history.file_version_bytes(b, oid, path, pick["version"]) == pick["data"]
        listed_values = history.values_versions(a, oid)["versions"]
        assert [(v["version"], v["author"]) for v in listed_values] == \
            [(r["version"], r["author"]) for r in reversed(values_ref)]
        assert a.get_object(oid)["values"] == values_ref[-1]["values"]
        one = rng.choice(values_ref)
        assert history.values_version(b, oid, one["version"])["values"] == one["values"]
    assert all(len(v) >= 3 for v in ref.values()), "the random run should build real histories"


def test_retention_trims_old_versions_and_gc_keeps_exactly_the_kept_blobs(server_factory):
    """keep 2 versions and 0 days: the periodic purge trims; ``oaiofs gc --grace 0`` then removes the
    trimmed versions' bytes and keeps exactly what the kept versions (and current files) need."""
    server = server_factory(env={"OAIOFS_HISTORY_KEEP_VERSIONS": "2", "OAIOFS_HISTORY_KEEP_DAYS": "0",
                                 "OAIOFS_HISTORY_MAX_VERSIONS": "5", "OAIOFS_PURGE_INTERVAL_S": "0.5",
                                 "OAIOFS_TRASH_RETENTION_S": "0"})    # deleted files leave the trash at once
    user = server.add_user("keeper")
    api = client(server, user)
    oid = api.create_object({"v": 0}, unique_id("ret"))["oaio_id"]
    contents = [f"version {i}\n".encode() * (i + 1) for i in range(5)]
    for data in contents:
        api.put_file(oid, "f.txt", data)
    api.put_file(oid, "gone.txt", b"deleted later\n")
    api.put_file(oid, "gone.txt", b"deleted later, second\n")
    api.delete_file(oid, "gone.txt")
    for i in range(1, 5):
        api.update_values(oid, {"v": i}, mode="replace")

    def trimmed() -> bool:
        try:
            history.file_versions(api, oid, "gone.txt")
            return False
        except NotFound:
            return (len(history.file_versions(api, oid, "f.txt")["versions"]) == 2
                    and len(history.values_versions(api, oid)["versions"]) == 2)
    # (the trash's purge may drop gone.txt's versions in a pass that ran before the last values changes)
    wait_until(trimmed, timeout=60, interval=0.3, message="the purge to trim the history")
    listed = history.file_versions(api, oid, "f.txt")["versions"]
    assert [v["sha256"] for v in listed] == [sha(contents[4]), sha(contents[3])]
    values = history.values_versions(api, oid)["versions"]
    assert len(values) == 2 and history.values_version(api, oid, values[1]["version"])["values"] == {"v": 3}
    trimmed_version = listed[-1]["version"] - 1
    with pytest.raises(NotFound):
        history.file_version_bytes(api, oid, "f.txt", trimmed_version)

    assert stored_keys(server) == {key(d) for d in contents} | {key(b"deleted later\n"),
                                                                key(b"deleted later, second\n")}
    gc(server, "--grace", "0")
    assert stored_keys(server) == {key(contents[4]), key(contents[3])}
    # the kept old version still reads back and restores
    assert history.file_version_bytes(api, oid, "f.txt", listed[1]["version"]) == contents[3]
    history.restore_file(api, oid, "f.txt", listed[1]["version"])
    assert api.get_file(oid, "f.txt") == contents[3]
    gc(server, "--grace", "0")
    assert stored_keys(server) == {key(contents[4]), key(contents[3])}


def _url(server, template: str, **parts: str) -> str:
    return server.url + template.format(**parts)


def test_hostile_history_input_gets_precise_errors_and_changes_nothing(live_server, make_user):
    alice, reader, stranger = make_user("alice"), make_user("reader"), make_user("stranger")
    a = client(live_server, alice)
    oid = a.create_object({"k": 1}, unique_id("hostile"))["oaio_id"]
    for data in (b"one\n", b"two\n"):
        a.put_file(oid, "dir/f.txt", data)
    a.set_subscription(oid, reader, "r")
    first = history.file_versions(a, oid, "dir/f.txt")["versions"][-1]["version"]
    before = a.get_object(oid)
    s = requests.Session()
    s.auth = (alice, PASSWORD)

    def status(method: str, template: str, want: int, code: str, params=None, **parts: str) -> dict:
        resp = s.request(method, _url(live_server, template, oaio_id=oid, **parts), params=params)
        assert resp.status_code == want, (template, parts, resp.status_code, resp.text[:300])
        body = resp.json()
        assert body["error"] == code and body["message"] and isinstance(body["detail"], dict)
        return body

    for bad in ("-1", "%D9%A3", "%C2%B2", "1.5", "1e3", "%20", "0x10", "abc"):       # negative, ٣, ², ...
        status("GET", protocol.PATH_HISTORY_BYTES, 400, "invalid_input", version=bad, path="dir/f.txt")
        status("POST", protocol.PATH_HISTORY_RESTORE, 400, "invalid_input", version=bad, path="dir/f.txt")
        status("GET", protocol.PATH_HISTORY_VALUES_VERSION, 400, "invalid_input", version=bad)
        status("POST", protocol.PATH_HISTORY_VALUES_RESTORE, 400, "invalid_input", version=bad)
    for missing in ("0", "999999", "2147483648", "99999999999999999999"):       # out of range
        body = status("GET", protocol.PATH_HISTORY_BYTES, 404, "not_found", version=missing, path="dir/f.txt")
        status("POST", protocol.PATH_HISTORY_RESTORE, 404, "not_found", version=missing, path="dir/f.txt")
        status("POST", protocol.PATH_HISTORY_VALUES_RESTORE, 404, "not_found", version=missing)
    assert "no version 999999" in status("GET", protocol.PATH_HISTORY_BYTES, 404, "not_found", version="999999",
                                         path="dir/f.txt")["message"]
    assert body["detail"] == {"version": 99999999999999999999}
    # paths: not in the object, a folder, hostile spellings
    status("GET", protocol.PATH_HISTORY_VERSIONS, 404, "not_found", path="nope.txt")
    status("POST", protocol.PATH_HISTORY_RESTORE, 404, "not_found", version=str(first), path="nope.txt")
    assert "folder" in status("GET", protocol.PATH_HISTORY_VERSIONS, 404, "not_found", path="dir")["message"]
    for bad_path in ("dir/%2E%2E/f.txt", "%00x", "values.json", "a//b"):
        resp = s.get(_url(live_server, protocol.PATH_HISTORY_VERSIONS, oaio_id=oid, path=bad_path))
        assert resp.status_code in (400, 404, 422), (bad_path, resp.status_code)
        assert resp.json()["error"] in ("invalid_input", "invalid_value", "not_found")
    # base versions: stale, negative, out of range
    status("POST", protocol.PATH_HISTORY_RESTORE, 409, "version_conflict", params={"base_version": first},
           version=str(first), path="dir/f.txt")
    status("POST", protocol.PATH_HISTORY_RESTORE, 422, "invalid_value", params={"base_version": -1},
           version=str(first), path="dir/f.txt")
    status("POST", protocol.PATH_HISTORY_RESTORE, 422, "invalid_value", params={"base_version": "٣"},
           version=str(first), path="dir/f.txt")
    status("POST", protocol.PATH_HISTORY_VALUES_RESTORE, 409, "version_conflict", params={"base_version": 1},
           version="1")
    # rights: r lists and reads but cannot restore; a stranger sees nothing
    r = client(live_server, reader)
    assert len(history.file_versions(r, oid, "dir/f.txt")["versions"]) == 2
    assert history.file_version_bytes(r, oid, "dir/f.txt", first) == b"one\n"
    with pytest.raises(Forbidden):
        history.restore_file(r, oid, "dir/f.txt", first)
    with pytest.raises(Forbidden):
        history.restore_values(r, oid, 1)
    x = client(live_server, stranger)
    for call in (lambda: history.file_versions(x, oid, "dir/f.txt"), lambda: history.values_versions(x, oid),
                 lambda: history.restore_file(x, oid, "dir/f.txt", first)):
        with pytest.raises(NotFound):
            call()
    # a folder now stands where the file was: restoring onto it is a conflict
    a.delete_file(oid, "dir/f.txt")
    a.make_dir(oid, "dir/f.txt")
    mid = a.get_object(oid)
    status("POST", protocol.PATH_HISTORY_RESTORE, 409, "conflict", version=str(first), path="dir/f.txt")
    assert a.get_object(oid) == mid
    assert {k: before[k] for k in ("values",)} == {k: mid[k] for k in ("values",)}
    # Range on a kept version
    resp = s.get(_url(live_server, protocol.PATH_HISTORY_BYTES, oaio_id=oid, version=str(first), path="dir/f.txt"),
                 headers={"Range": "bytes=1-2"})
    assert resp.status_code == 206 and resp.content == b"ne"


def test_a_moved_file_keeps_its_history(live_server, make_user):
    """An editor's save (write a temporary file, rename it over the original) keeps the original's history."""
    user = make_user("editor")
    api = client(live_server, user)
    oid = api.create_object({}, unique_id("mv"))["oaio_id"]
    api.put_file(oid, "doc.txt", b"draft 1\n")
    api.put_file(oid, "doc.txt", b"draft 2\n")
    api.put_file(oid, ".doc.txt.swp", b"draft 3\n")
    api.move(oid, ".doc.txt.swp", "doc.txt", overwrite=True)
    listed = history.file_versions(api, oid, "doc.txt")["versions"]
    assert [v["sha256"] for v in listed] == [sha(b"draft 3\n"), sha(b"draft 2\n"), sha(b"draft 1\n")]
    assert listed[0]["current"]
    api.move(oid, "doc.txt", "folder/renamed.txt")
    assert len(history.file_versions(api, oid, "folder/renamed.txt")["versions"]) == 3
    with pytest.raises(NotFound):
        history.file_versions(api, oid, "doc.txt")
