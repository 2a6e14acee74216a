"""Server: per-file mode bits, mtime in nanoseconds, symbolic links; PATCH without bytes; hostile input."""
from __future__ import annotations

import random
import sqlite3

import pytest
import requests

from tests.conftest import PASSWORD
from oaiofs import protocol
from oaiofs.client.api import quote_id
from oaiofs.errors import Conflict, Forbidden, InvalidValue, NotFound
from oaiofs.server import db as dbmod
from oaiofs.client.uploads import TusUploader
from tests.server.server_helpers import client, unique_id


def _file(doc, path):
    return next(f for f in doc["files"] if f["path"] == path)


def test_mode_and_mtime_ns_travel_by_put_tus_and_patch(live_server, make_user, tmp_path):
    api = client(live_server, make_user("meta"))
    oid = api.create_object({}, unique_id())["oaio_id"]
    doc = api.put_file(oid, "d/run.sh", b"#!/bin/sh\n", mode=0o755, mtime_ns=1_500_000_000_123_456_789)
    assert (doc["mode"], doc["mtime_ns"], doc["kind"], doc["target"]) == (0o755, 1_500_000_000_123_456_789,
                                                                         "file", None)
    assert doc["mtime"] == pytest.approx(1_500_000_000.123456789)
    folder = _file(api.get_object(oid), "d")
    assert folder["mode"] == 0o755 and folder["kind"] == "dir"
    plain = api.put_file(oid, "plain.txt", b"x")                      # defaults
    assert plain["mode"] == 0o644
    src = tmp_path / "big"
    src.write_bytes(b"y" * 100_000)
    result = TusUploader(api).upload_file(src, oid, "tus.bin", mode=0o700, mtime_ns=-5)
    entry = _file(api.get_object(oid), "tus.bin")
    assert (entry["mode"], entry["mtime_ns"], entry["version"]) == (0o700, -5, result["version"])

    before = api.get_object(oid)
    after = api.set_file_meta(oid, "tus.bin", mode=0o4751, mtime_ns=1_000_000_000_000_000_001)
    changed = _file(after, "tus.bin")
    assert changed["mode"] == 0o751                                    # set-user-id is never stored
    assert changed["mtime_ns"] == 1_000_000_000_000_000_001
    old = _file(before, "tus.bin")
    assert (changed["sha256"], changed["size"], changed["version"]) == (old["sha256"], old["size"], old["version"])
    assert after["version"] == before["version"] + 1                   # subscribers hear of it
    only_time = api.set_file_meta(oid, "d", mtime_ns=7)                # folders have their own mtime
    assert _file(only_time, "d")["mtime_ns"] == 7 and _file(only_time, "d")["mode"] == 0o755
    rewritten = api.put_file(oid, "tus.bin", b"new")                   # no mode given: the bits stay
    assert rewritten["mode"] == 0o751


def test_links_are_entries_with_their_target_as_given(live_server, make_user):
    api = client(live_server, make_user("links"))
    oid = api.create_object({}, unique_id())["oaio_id"]
    for path, target in [("a/rel", "../x/y"), ("abs", "/etc/passwd"), ("dots", "../../../../outside"),
                         ("uni", "Bilder ü/#?%"), ("long", "t" * protocol.MAX_LINK_TARGET_BYTES)]:
        entry = _file(api.make_link(oid, path, target, mtime_ns=42), path)
        assert (entry["kind"], entry["target"], entry["size"], entry["sha256"], entry["mtime_ns"]) == \
            ("link", target, len(target.encode()), None, 42)
        assert entry["mode"] == 0o777
    with pytest.raises(NotFound):                                       # no bytes behind a link
        api.get_file(oid, "abs")
    api.put_file(oid, "f", b"file")
    doc = api.make_link(oid, "f", "abs")                                # a link replaces a file (ln -sf)
    assert _file(doc, "f")["kind"] == "link"
    doc = api.put_file(oid, "f", b"again")                              # and a file a link
    assert doc["kind"] == "file" and doc["target"] is None and doc["mode"] == 0o644
    doc = api.move(oid, "abs", "moved", overwrite=False)
    assert _file(doc, "moved")["target"] == "/etc/passwd"
    doc = api.move(oid, "moved", "f", overwrite=True)                   # rename(2) of a link over a file
    assert _file(doc, "f")["kind"] == "link"
    api.delete_file(oid, "f")
    assert "f" not in [e["path"] for e in api.get_object(oid)["files"]]


def test_parent_folder_mtime_moves_on_create_unlink_rename(live_server, make_user):
    api = client(live_server, make_user("parent"))
    oid = api.create_object({}, unique_id())["oaio_id"]
    api.make_dir(oid, "d")
    api.set_file_meta(oid, "d", mtime_ns=1)
    steps = [lambda: api.put_file(oid, "d/new", b"1"), lambda: api.make_link(oid, "d/l", "new"),
             lambda: api.make_dir(oid, "d/sub"), lambda: api.move(oid, "d/new", "d/renamed"),
             lambda: api.delete_file(oid, "d/renamed")]
    for step in steps:
        step()
        assert _file(api.get_object(oid), "d")["mtime_ns"] > 1
        api.set_file_meta(oid, "d", mtime_ns=1)
    api.put_file(oid, "d/l2", b"x")
    api.set_file_meta(oid, "d", mtime_ns=1)
    api.put_file(oid, "d/l2", b"rewritten")                             # content only: no name changed
    assert _file(api.get_object(oid), "d")["mtime_ns"] == 1


@pytest.mark.parametrize("body", [
    {"mode": -1}, {"mode": 0o10000}, {"mode": "0755"}, {"mode": True}, {"mode": 1.5}, {"mtime_ns": 1 << 64},
    {"mtime_ns": "now"}, {}, {"mode": 0o644, "extra": 1}, {"mtime_ns": 1.5}])
def test_bad_patch_bodies_are_refused_and_change_nothing(live_server, make_user, body):
    api = client(live_server, make_user("badpatch"))
    oid = api.create_object({}, unique_id())["oaio_id"]
    api.put_file(oid, "f", b"x", mode=0o600, mtime_ns=5)
    before = api.get_object(oid)
    url = live_server.url + protocol.PATH_FILE.format(oaio_id=quote_id(oid), path="f")
    resp = requests.patch(url, json=body, auth=(api.username, PASSWORD), timeout=30)
    assert resp.status_code in (400, 422), resp.text
    assert set(resp.json()) >= {"error", "message", "detail"}
    assert api.get_object(oid) == before


@pytest.mark.parametrize("target", ["", "a\x00b", "x" * (protocol.MAX_LINK_TARGET_BYTES + 1), 5, None])
def test_bad_link_targets_are_refused(live_server, make_user, target):
    api = client(live_server, make_user("badlink"))
    oid = api.create_object({}, unique_id())["oaio_id"]
    before = api.get_object(oid)
    url = live_server.url + protocol.PATH_LINK.format(oaio_id=quote_id(oid), path="l")
    resp = requests.put(url, json={"target": target}, auth=(api.username, PASSWORD), timeout=30)
    assert resp.status_code in (400, 422), resp.text
    assert resp.json()["error"] in ("invalid_value", "invalid_input", "malformed_json")
    assert api.get_object(oid) == before


def test_refusals_by_right_and_kind(live_server, make_user, api_for):
    owner, reader = make_user("own"), make_user("read")
    api = client(live_server, owner)
    oid = api.create_object({}, unique_id())["oaio_id"]
    api.put_file(oid, "f", b"x")
    api.make_dir(oid, "dir")
    api.set_subscription(oid, reader, "r")
    other = client(live_server, reader)
    with pytest.raises(Forbidden):
        other.set_file_meta(oid, "f", mode=0o777)
    with pytest.raises(Forbidden):
        other.make_link(oid, "l", "f")
    with pytest.raises(NotFound):
        api.set_file_meta(oid, "missing", mode=0o600)
    with pytest.raises(Conflict):
        api.make_link(oid, "dir", "f")                                  # a folder is not replaced
    with pytest.raises(Conflict):
        api.make_link(oid, "f/below", "x")                              # a file is no folder
    with pytest.raises(InvalidValue):
        api.make_link(oid, "../escape", "x")
    with pytest.raises(InvalidValue):
        api.put_file(oid, "g", b"x", mode=0o70000)
    assert {f["path"] for f in api.get_object(oid)["files"]} == {"f", "dir"}


def test_tus_metadata_mode_and_mtime_are_validated(live_server, make_user):
    api = client(live_server, make_user("tusbad"))
    oid = api.create_object({}, unique_id())["oaio_id"]
    for meta in ({protocol.META_MODE: "rwx"}, {protocol.META_MODE: "99999"}, {protocol.META_MTIME_NS: "1.5"}):
        headers = {"Tus-Resumable": protocol.TUS_VERSION, "Upload-Length": "1",
                   "Upload-Metadata": protocol.encode_upload_metadata(
                       {protocol.META_OAIO_ID: oid, protocol.META_PATH: "f", **meta})}
        resp = requests.post(live_server.url + protocol.PATH_UPLOADS, headers=headers,
                             auth=(api.username, PASSWORD), timeout=30)
        assert resp.status_code in (400, 422), (meta, resp.text)


def test_migration_gives_existing_files_their_mtime_and_mode_0644(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    from alembic import command
    cfg = dbmod.alembic_config(url)
    command.upgrade(cfg, "0001_initial")
    con = sqlite3.connect(tmp_path / "old.db")
    con.execute("INSERT INTO users (id, username, password_hash, is_admin, created) VALUES (1, 'u', 'x', 0, '2020')")
    con.execute("INSERT INTO objects (id, oaio_id, owner_id, values_json, version, stamp, app_id, device_id, "
                "created, updated) VALUES (1, 'o', 1, '{}', 1, '20200101000000000000', '', '', '2020', '2020')")
    rows = [(1, "f", "file", 1_400_000_000.25), (2, "d", "dir", 1_300_000_000.5)]
    for fid, path, kind, mtime in rows:
        con.execute("INSERT INTO files (id, object_id, path, path_hash, kind, size, version, stamp, mtime) "
                    "VALUES (?, 1, ?, ?, ?, 0, 1, '20200101000000000000', ?)", (fid, path, path, kind, mtime))
    con.commit()
    con.close()
    dbmod.run_migrations(url)
    con = sqlite3.connect(tmp_path / "old.db")
    got = con.execute("SELECT path, mode, mtime_ns, target FROM files ORDER BY id").fetchall()
    con.close()
    assert got == [("f", 0o644, 1_400_000_000_250_000_000, None), ("d", 0o755, 1_300_000_000_500_000_000, None)]


def test_random_metadata_sequences_match_a_model(live_server, make_user):
    """Seeded: chmod/utime/link/put/move/delete through the API vs a dict model of (kind, mode, mtime, target)."""
    api = client(live_server, make_user("model"))
    oid = api.create_object({}, unique_id())["oaio_id"]
    rng = random.Random(1414)
    model: dict[str, tuple] = {}
    names = ["a", "b", "c", "l1", "l2"]
    for _step in range(60):
        name = rng.choice(names)
        action = rng.choice(["put", "chmod", "utime", "link", "move", "delete"])
        cur = model.get(name)
        if action == "put":
            mode = rng.choice([None, 0o600, 0o755, 0o640])
            ns = rng.randrange(-10**18, 10**18)
            api.put_file(oid, name, b"x", mode=mode, mtime_ns=ns)
            keep = cur[1] if cur and cur[0] == "file" else 0o644
            model[name] = ("file", mode if mode is not None else keep, ns, None)
        elif action == "link":
            target = rng.choice(["a", "../up", "/abs/olute", "b/c"])
            ns = rng.randrange(0, 10**18)
            api.make_link(oid, name, target, mtime_ns=ns)
            model[name] = ("link", 0o777, ns, target)
        elif cur is None:
            with pytest.raises(NotFound):
                api.set_file_meta(oid, name, mode=0o700)
            continue
        elif action == "chmod":
            mode = rng.randrange(0, 0o10000)
            api.set_file_meta(oid, name, mode=mode)
            model[name] = (cur[0], cur[1] if cur[0] == "link" else mode & protocol.MODE_BITS, cur[2], cur[3])
        elif action == "utime":
            ns = rng.randrange(0, 10**18)
            api.set_file_meta(oid, name, mtime_ns=ns)
            model[name] = (cur[0], cur[1], ns, cur[3])
        elif action == "move":
            dst = rng.choice([n for n in names if n != name])
            api.move(oid, name, dst, overwrite=True)
            model[dst] = model.pop(name)
        else:
            api.delete_file(oid, name)
            del model[name]
        got = {f["path"]: (f["kind"], f["mode"], f["mtime_ns"], f["target"]) for f in api.get_object(oid)["files"]}
        assert got == model, (_step, action, name)


@pytest.mark.parametrize("text", ["٧٥٥", "0o٧٥٥", "²", "7_55", "0o7_55", "+٣", "１２"])
def test_mode_and_mtime_ns_text_takes_ascii_digits_only(text):
    """``int()`` accepts Unicode digits and underscores; the validators, like ``parse_ascii_int``, do not."""
    with pytest.raises(InvalidValue):
        protocol.validate_mode(text)
    if not text.startswith("0o"):
        with pytest.raises(InvalidValue):
            protocol.validate_mtime_ns(text)
    assert protocol.validate_mode(" 0o755 ") == 0o755 and protocol.validate_mode("420") == 0o644
    assert protocol.validate_mtime_ns("-5") == -5 and protocol.validate_mtime_ns("+12") == 12


def test_unicode_digits_in_mode_and_mtime_ns_are_refused_over_http(live_server, make_user):
    api = client(live_server, make_user("tusdigits"))
    oid = api.create_object({}, unique_id())["oaio_id"]
    for meta in ({protocol.META_MODE: "٧٥٥"}, {protocol.META_MTIME_NS: "١٢٣"}, {protocol.META_MTIME_NS: "1_000"}):
        headers = {"Tus-Resumable": protocol.TUS_VERSION, "Upload-Length": "1",
                   "Upload-Metadata": protocol.encode_upload_metadata(
                       {protocol.META_OAIO_ID: oid, protocol.META_PATH: "f", **meta})}
        resp = requests.post(live_server.url + protocol.PATH_UPLOADS, headers=headers,
                             auth=(api.username, PASSWORD), timeout=30)
        assert resp.status_code == 422, (meta, resp.text)
        assert set(resp.json()) == {"error", "message", "detail"}
    url = live_server.url + protocol.PATH_FILE.format(oaio_id=quote_id(oid), path="g")
    resp = requests.put(url, params={"mode": "٧٥٥"}, data=b"x", auth=(api.username, PASSWORD), timeout=30)
    assert resp.status_code == 422, resp.text
    assert api.get_object(oid)["files"] == []
