"""Server: batch commit of many small files (POST .../batch): per-file results, conflicts, hostile input,
rights, cut connections, limits, and a seeded model test mixing batches with single PUTs and deletes."""
from __future__ import annotations

import hashlib
import io
import json
import random
import socket
import tarfile
import urllib.parse

import pytest

from oaiofs import protocol
from oaiofs.client.api import batch_body, quote_id
from oaiofs.errors import Forbidden, NotFound, TooLarge
from tests.server.server_helpers import client, unique_id


def bf(path: str, data: bytes, **kwargs) -> protocol.BatchFile:
    return protocol.BatchFile(path, data, hashlib.sha256(data).hexdigest(), **kwargs)


def _files(doc) -> dict[str, dict]:
    return {f["path"]: f for f in doc["files"]}


def _contents(api, oid) -> dict[str, bytes]:
    return {p: api.get_file(oid, p) for p, f in _files(api.get_object(oid)).items() if f["kind"] == "file"}


def test_batch_commits_every_file_with_per_file_results_and_one_event(live_server, make_user):
    api = client(live_server, make_user("batch"))
    oid = api.create_object({}, unique_id())["oaio_id"]
    _, cursor = api.list_objects()
    start = api.get_object(oid)["version"]
    files = [bf(f"src/d{i % 3}/f{i}.txt", f"file {i}\n".encode() * (i + 1), mtime_ns=1_000 + i,
                mode=0o600 if i == 2 else None) for i in range(12)]
    results = api.commit_batch(oid, files)
    assert [r["path"] for r in results] == [f.path for f in files]
    assert {r["status"] for r in results} == {"ok"}
    doc = api.get_object(oid)
    assert all(r["object_version"] == doc["version"] for r in results)
    assert doc["version"] == start + len(files)                      # like 12 single PUTs
    assert sorted(r["version"] for r in results) == list(range(start + 1, start + 13))
    entries = _files(doc)
    for item, result in zip(files, results):
        entry = entries[item.path]
        assert (entry["version"], entry["sha256"], entry["size"]) == (result["version"], item.sha256, len(item.data))
        assert entry["mtime_ns"] == item.mtime_ns
        assert api.get_file(oid, item.path) == item.data
    assert entries["src/d2/f2.txt"]["mode"] == 0o600 and entries["src/d0/f0.txt"]["mode"] == 0o644
    assert entries["src"]["kind"] == entries["src/d1"]["kind"] == "dir"
    events, _ = api.changes(cursor)
    updates = [e for e in events if e["type"] == protocol.EVENT_UPDATED and e["subject"] == oid]
    assert len(updates) == 1                                          # one merged event for the batch
    data = updates[0]["data"]
    assert data["version"] == doc["version"]
    assert set(data["changed_files"]) >= {f.path for f in files} | {"src", "src/d0", "src/d1", "src/d2"}


def test_a_stale_base_conflicts_that_file_only(live_server, make_user):
    api = client(live_server, make_user("stale"))
    oid = api.create_object({}, unique_id())["oaio_id"]
    v1 = api.put_file(oid, "a.txt", b"one")["version"]
    api.put_file(oid, "a.txt", b"two")                                # someone else moved it on
    api.put_file(oid, "dir/x", b"x")
    results = api.commit_batch(oid, [bf("new.txt", b"n", base_version=0), bf("a.txt", b"mine", base_version=v1),
                                     bf("b.txt", b"b"), bf("dir", b"file over folder"),
                                     bf("dir/x/y", b"under a file"), bf("new2.txt", b"z", base_version=0)])
    assert [r["status"] for r in results] == ["ok", "conflict", "ok", "conflict", "conflict", "ok"]
    assert results[1]["error"]["error"] == "version_conflict"
    assert results[1]["error"]["detail"]["current_version"] > v1
    assert results[3]["error"]["error"] == "conflict" and "version" not in results[3]
    assert _contents(api, oid) == {"a.txt": b"two", "dir/x": b"x", "new.txt": b"n", "b.txt": b"b", "new2.txt": b"z"}


def test_sha256_mismatch_refuses_that_file(live_server, make_user):
    api = client(live_server, make_user("sha"))
    oid = api.create_object({}, unique_id())["oaio_id"]
    wrong = protocol.BatchFile("bad.bin", b"actual bytes", hashlib.sha256(b"other").hexdigest())
    results = api.commit_batch(oid, [bf("good.bin", b"good"), wrong])
    assert results[0]["status"] == "ok"
    assert results[1]["status"] == "error" and results[1]["error"]["error"] == "checksum_mismatch"
    assert results[1]["error"]["detail"]["actual"] == hashlib.sha256(b"actual bytes").hexdigest()
    assert _contents(api, oid) == {"good.bin": b"good"}


def _raw_body(manifest: bytes | dict, members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in [(protocol.BATCH_MANIFEST_NAME, raw), *members]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _post(api, oid, body: bytes, content_type: str = protocol.BATCH_CONTENT_TYPE):
    return api.session.post(api.url(protocol.PATH_BATCH.format(oaio_id=quote_id(oid))), data=body,
                            headers={"Authorization": f"Bearer {api._ensure_token()}", "Content-Type": content_type},
                            timeout=60)


def _entry(path: str, data: bytes) -> dict:
    return {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


HOSTILE_PATHS = ["../escape", "a/../b", "/abs", "a//b", "a\\b", "nul\x00", "\udcff", "d/" * 300 + "deep",
                 "x" * 256, "values.json", "", 7, None]


def test_a_hostile_name_refuses_the_whole_batch(live_server, make_user):
    api = client(live_server, make_user("hostile"))
    oid = api.create_object({}, unique_id())["oaio_id"]
    api.put_file(oid, "keep.txt", b"keep")
    before = api.get_object(oid)
    good = [_entry("first.txt", b"1"), _entry("last.txt", b"2")]
    for bad_path in HOSTILE_PATHS:
        manifest = {"files": [good[0], {"path": bad_path, "sha256": hashlib.sha256(b"h").hexdigest(), "size": 1},
                              good[1]]}
        raw = json.dumps(manifest).encode()            # a lone surrogate is sent as the JSON escape \udcff
        resp = _post(api, oid, _raw_body(raw, [("0", b"1"), ("1", b"h"), ("2", b"2")]))
        assert resp.status_code == 422, (bad_path, resp.text)
        assert resp.json()["error"] == "invalid_value"
    after = api.get_object(oid)
    assert after["version"] == before["version"] and _files(after) == _files(before)


def test_a_malformed_body_refuses_the_whole_batch(live_server, make_user):
    api = client(live_server, make_user("malformed"))
    oid = api.create_object({}, unique_id())["oaio_id"]
    before = api.get_object(oid)
    one = [_entry("a.txt", b"a")]
    bodies = {
        "not_tar": b"this is not a tar stream at all" * 40,
        "no_manifest": _raw_body(b"", [])[0:0] + batch_body([bf("a.txt", b"a")])[512 + 512:],
        "manifest_not_json": _raw_body(b"{nope", [("0", b"a")]),
        "manifest_invalid_utf8": _raw_body(b'{"files": [{"path": "\xff\xfe", "sha256": "00", "size": 0}]}', []),
        "member_missing": _raw_body({"files": one}, []),
        "member_misnamed": _raw_body({"files": one}, [("a.txt", b"a")]),
        "size_differs": _raw_body({"files": one}, [("0", b"ab")]),
        "extra_member": _raw_body({"files": one}, [("0", b"a"), ("1", b"b")]),
        "duplicate_path": _raw_body({"files": one + one}, [("0", b"a"), ("1", b"a")]),
        "bad_sha": _raw_body({"files": [dict(one[0], sha256="XYZ")]}, [("0", b"a")]),
        "negative_base": _raw_body({"files": [dict(one[0], base_version=-1)]}, [("0", b"a")]),
        "unknown_field": _raw_body({"files": [dict(one[0], owner="root")]}, [("0", b"a")]),
        "bad_mode": _raw_body({"files": [dict(one[0], mode="rwx")]}, [("0", b"a")]),
        # non-finite numbers were read as "absent" by the manifest's own parser: the edge's rules refuse them
        "nan_mtime": _raw_body(b'{"files": [{"path": "a.txt", "sha256": "%s", "size": 1, "mtime_ns": NaN}]}'
                               % one[0]["sha256"].encode(), [("0", b"a")]),
        "infinite_base": _raw_body(b'{"files": [{"path": "a.txt", "sha256": "%s", "size": 1, "base_version": '
                                   b'Infinity}]}' % one[0]["sha256"].encode(), [("0", b"a")]),
        "deep_manifest": _raw_body(b'{"files": [], "x": ' + b"[" * 100 + b"]" * 100 + b"}", []),
    }
    for case, body in bodies.items():
        resp = _post(api, oid, body)
        assert resp.status_code == 422, (case, resp.text)
        assert set(resp.json()) == {"error", "message", "detail"}
    assert api.get_object(oid)["version"] == before["version"] and api.get_object(oid)["files"] == []


def test_rights_reader_403_stranger_404_no_token_401(live_server, make_user):
    owner, reader, stranger = make_user("owner"), make_user("reader"), make_user("stranger")
    a = client(live_server, owner)
    oid = a.create_object({}, unique_id())["oaio_id"]
    a.set_subscription(oid, reader, "r")
    with pytest.raises(Forbidden):
        client(live_server, reader).commit_batch(oid, [bf("x", b"x")])
    with pytest.raises(NotFound):
        client(live_server, stranger).commit_batch(oid, [bf("x", b"x")])
    with pytest.raises(NotFound):
        a.commit_batch(unique_id("missing"), [bf("x", b"x")])
    resp = a.session.post(a.url(protocol.PATH_BATCH.format(oaio_id=oid)), data=batch_body([bf("x", b"x")]))
    assert resp.status_code == 401
    updater = make_user("updater")
    a.set_subscription(oid, updater, "U")
    assert client(live_server, updater).commit_batch(oid, [bf("x", b"x")])[0]["status"] == "ok"
    assert a.get_object(oid)["files"][0]["path"] == "x"


def test_limits_answer_413(live_server, make_user):
    api = client(live_server, make_user("limits"))
    oid = api.create_object({}, unique_id())["oaio_id"]
    with pytest.raises(TooLarge):
        api.commit_batch(oid, [bf(f"f{i}", b"") for i in range(protocol.BATCH_MAX_FILES + 1)])
    with pytest.raises(TooLarge):
        api.commit_batch(oid, [bf("big", b"\0" * protocol.BATCH_MAX_BYTES)])
    assert api.get_object(oid)["files"] == []
    plan = protocol.plan_batches([bf(f"f{i}", b"\1" * 100_000) for i in range(400)])
    assert len(plan) > 1 and sum(map(len, plan)) == 400
    assert all(protocol.batch_body_bytes(b) <= protocol.BATCH_MAX_BYTES for b in plan)
    assert all(len(batch_body(b)) <= protocol.batch_body_bytes(b) for b in plan[:1])


def test_a_cut_connection_mid_body_applies_nothing(live_server, make_user):
    api = client(live_server, make_user("cut"))
    oid = api.create_object({}, unique_id())["oaio_id"]
    api.put_file(oid, "keep.txt", b"keep")
    before = api.get_object(oid)
    body = batch_body([bf(f"f{i}.bin", bytes([i]) * 50_000) for i in range(40)])
    url = urllib.parse.urlsplit(live_server.url)
    request = (f"POST {protocol.PATH_BATCH.format(oaio_id=quote_id(oid))} HTTP/1.1\r\n"
               f"Host: {url.hostname}:{url.port}\r\nAuthorization: Bearer {api._ensure_token()}\r\n"
               f"Content-Type: {protocol.BATCH_CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(request + body[:len(body) // 2])
    # the server notices the cut; nothing of the batch may appear, then or later
    api.commit_batch(oid, [bf("after.txt", b"later")])         # the server is fine and serialises after it
    after = api.get_object(oid)
    assert set(_files(after)) == {"keep.txt", "after.txt"}
    assert after["version"] == before["version"] + 1
    assert not [p for p in live_server.data_dir.rglob("batch-*")]       # no staging leftovers


def test_seeded_model_mixes_batches_single_puts_and_deletes(live_server, make_user):
    api = client(live_server, make_user("model"))
    oid = api.create_object({}, unique_id())["oaio_id"]
    rng = random.Random(16)
    model: dict[str, bytes] = {}
    versions: dict[str, int] = {}
    names = [f"d{i % 4}/n{i}" for i in range(40)]
    for step in range(60):
        action = rng.random()
        if action < 0.5:
            chosen = rng.sample(names, rng.randint(1, 12))
            batch = []
            for path in chosen:
                data = rng.randbytes(rng.randint(0, 3000))
                stale = rng.random() < 0.2
                base = versions.get(path, 0) + (7 if stale else 0) if rng.random() < 0.6 else None
                batch.append(bf(path, data, base_version=base))
            results = api.commit_batch(oid, batch)
            for item, result in zip(batch, results):
                expect_ok = item.base_version is None or item.base_version == versions.get(item.path, 0)
                assert result["status"] == ("ok" if expect_ok else "conflict"), (step, item.path, result)
                if expect_ok:
                    model[item.path] = item.data
                    versions[item.path] = result["version"]
        elif action < 0.8:
            path = rng.choice(names)
            data = rng.randbytes(rng.randint(0, 2000))
            versions[path] = api.put_file(oid, path, data)["version"]
            model[path] = data
        elif model:
            path = rng.choice(sorted(model))
            api.delete_file(oid, path, base_version=versions[path])
            del model[path], versions[path]
    assert _contents(api, oid) == model
    entries = _files(api.get_object(oid))
    assert {p: entries[p]["version"] for p in model} == versions
