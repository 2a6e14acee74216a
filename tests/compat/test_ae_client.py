"""The unmodified seed client ``ae.oaio_client`` 0.3.19 (PyPI) against a real server: the compat layer at /api/."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from oaiofs.errors import Gone

from .helpers import RawSession, close, object_dict, seed_client

pytest.importorskip("ae.oaio_client")
from ae.oaio_model import now_stamp, object_id  # noqa: E402


def test_register_sync_share_update_and_unregister(live_server, make_user, api_for, tmp_path: Path):
    alice, bob = make_user("alice"), make_user("bob")
    c1 = seed_client(live_server, alice, tmp_path / "alice-dev1")
    c2 = seed_client(live_server, alice, tmp_path / "alice-dev2")
    cb = seed_client(live_server, bob, tmp_path / "bob-dev1")
    try:
        assert c1.synchronize_with_server_if_online(), c1.error_message          # first sync
        obj = c1.register_object({"_name": "notes", "title": "Grüße ✓ 日本"})
        assert obj is not None, c1.error_message
        oaio_id = obj.oaio_id
        native = api_for(alice).get_object(oaio_id)                               # an ordinary oaiofs object
        assert native["values"] == {"_name": "notes", "title": "Grüße ✓ 日本"} and native["access_right"] == "C"
        assert native["app_id"] == "interop" and native["device_id"] == c1.device_id

        assert c2.synchronize_with_server_if_online(), c2.error_message          # second device of alice
        assert c2.client_objectz[oaio_id].client_values == {"_name": "notes", "title": "Grüße ✓ 日本"}
        assert c2.client_objectz[oaio_id].client_stamp == obj.client_stamp       # the client's stamp, verbatim

        c1.update_object(oaio_id, {"title": "neu: ü€ \u2603", "n": 3})
        assert c1.client_objectz[oaio_id].server_stamp == c1.client_objectz[oaio_id].client_stamp, c1.error_message
        assert c2.synchronize_with_server_if_online(), c2.error_message
        assert c2.client_objectz[oaio_id].client_values == {"_name": "notes", "title": "neu: ü€ \u2603", "n": 3}

        pid = c1.upsert_subscription(oaio_id, bob, "r")
        assert pid > 0, c1.error_message
        access = c1.userz_access(oaio_id)
        assert {"username": bob, "access_right": "r"} in access
        assert {"username": alice, "access_right": "C"} in access
        assert all(e["access_right"] == "x" for e in access if e["username"] not in (alice, bob))

        assert cb.synchronize_with_server_if_online(), cb.error_message
        assert cb.client_objectz[oaio_id].csh_access_right == "r"
        cb.update_object(oaio_id, {"title": "bob was here"})                     # refused by the server (403)
        assert not cb.synchronize_with_server_if_online()
        assert api_for(alice).get_object(oaio_id)["values"]["title"] == "neu: ü€ \u2603"
        assert c2.synchronize_with_server_if_online(), c2.error_message

        api_for(alice).update_values(oaio_id, {"native": "from /api/v1"})       # a native change reaches the client
        assert c2.synchronize_with_server_if_online(), c2.error_message
        assert c2.client_objectz[oaio_id].client_values["native"] == "from /api/v1"
        c2.update_object(oaio_id, {"after": "native"})                            # and the client edits on top of it
        assert c2.client_objectz[oaio_id].server_stamp == c2.client_objectz[oaio_id].client_stamp, c2.error_message
        assert api_for(alice).get_object(oaio_id)["values"]["after"] == "native"

        assert c2.unregister_object(oaio_id) == ""
        with pytest.raises(Gone):                                                 # a tombstone
            api_for(alice).get_object(oaio_id)
        assert c1.synchronize_with_server_if_online(), c1.error_message
        raw = RawSession(live_server)
        assert raw.login(alice).status_code == 200
        assert oaio_id not in [o["oaio_id"] for o in raw.get("oaio_stampz/").json()]
    finally:
        close(c1, c2, cb)


def test_stale_upload_is_refused_and_the_newer_version_wins(live_server, make_user, api_for, tmp_path: Path):
    alice = make_user("alice")
    c1 = seed_client(live_server, alice, tmp_path / "d1")
    c2 = seed_client(live_server, alice, tmp_path / "d2")
    try:
        obj = c1.register_object({"_name": "race", "v": 0})
        assert obj is not None and c2.synchronize_with_server_if_online()
        older = now_stamp()
        c1.update_object(obj.oaio_id, {"v": 1})                        # newer stamp reaches the server first
        c2.update_object(obj.oaio_id, {"v": 2}, stamp=older)           # stale: 409, then overwritten by v=1
        assert api_for(alice).get_object(obj.oaio_id)["values"]["v"] == 1
        assert c2.client_objectz[obj.oaio_id].client_values["v"] == 1  # same sync: the server's version won
        assert c2.synchronize_with_server_if_online(), c2.error_message  # converged: nothing dirty any more
    finally:
        close(c1, c2)


def test_wrong_password_is_401_and_a_fresh_client_still_logs_in(live_server, make_user, tmp_path: Path):
    alice = make_user("alice")
    raw = RawSession(live_server)
    assert raw.login(alice, "wrong password").status_code == 401
    assert raw.get("current_stamp/").status_code == 401
    assert raw.login(alice).status_code == 200                         # the same session may try again
    assert raw.get("current_stamp/").json()["current_stamp"].isdigit()

    bad = seed_client(live_server, alice, tmp_path / "bad", password="wrong")
    assert bad.synchronize_with_server_if_online() is False
    good = seed_client(live_server, alice, tmp_path / "good")
    try:
        assert good.synchronize_with_server_if_online(), good.error_message
    finally:
        close(good)


def test_long_seed_ids_up_to_255_bytes(live_server, make_user, api_for, tmp_path: Path):
    alice = make_user("alice")
    client = seed_client(live_server, alice, tmp_path / "d1", device="dev1")
    try:
        stamp = now_stamp()
        parts: list[str] = []
        oaio_id = ""
        while len(oaio_id.encode()) <= 200:                            # '/' is defused to a 3-byte '⁄'
            parts.append("Ordner")
            values = {"_name": "/".join(parts)}
            oaio_id = object_id(user_name=alice, device_id="dev1", app_id="interop", stamp=stamp, values=values)
        assert 200 < len(oaio_id.encode()) <= 255
        obj = client.register_object(values, stamp=stamp)
        assert obj is not None and obj.oaio_id == oaio_id, client.error_message
        assert api_for(alice).get_object(oaio_id)["values"] == values
    finally:
        close(client)
    raw = RawSession(live_server)
    raw.login(alice)
    too_long = "y" * 256
    res = raw.post("register/", object_dict(too_long, now_stamp(), {}, alice))
    assert res.status_code == 422 and res.json()["error"] == "invalid_value"


ESCAPING_VALUES = [
    {"_root_path": "/etc"}, {"_root_path": "{usr}/../../etc"}, {"_root_path": "~/x"}, {"_root_path": "C:\\x"},
    {"_file_paths": ["../outside.txt"]}, {"_file_paths": ["/etc/passwd"]}, {"_file_paths": ["a/../../b"]},
    {"_file_paths": ["ok.txt", "..\\win.txt"]}, {"_root_path": 5}, {"_file_paths": "a.txt"},
]


def test_escaping_paths_are_refused(live_server, make_user, api_for):
    alice = make_user("alice")
    raw = RawSession(live_server)
    assert raw.login(alice).status_code == 200
    for values in ESCAPING_VALUES:
        oaio_id = f"escape-{random.getrandbits(40):x}"
        res = raw.post("register/", object_dict(oaio_id, now_stamp(), values, alice))
        assert res.status_code == 422, (values, res.text)
    assert api_for(alice).list_objects()[0] == []                       # nothing was stored


def test_an_escaping_root_path_from_the_client_never_reaches_the_server(live_server, make_user, api_for,
                                                                        tmp_path: Path):
    alice = make_user("alice")
    client = seed_client(live_server, alice, tmp_path / "d1")
    try:
        assert client.register_object({"_root_path": "{usr}/../../../tmp/evil"}) is None
        assert api_for(alice).list_objects()[0] == []
    finally:
        close(client)


def test_csrf_session_and_admin_rules(live_server, make_user):
    alice = make_user("alice")
    raw = RawSession(live_server)
    assert raw.get("current_stamp/").status_code == 401                 # no session
    assert raw.get("oaio_stampz/").status_code == 401
    token = raw.csrf()
    res = raw.http.post(raw.base + "login/", json={"username": alice, "password": "pw"}, timeout=30)
    assert res.status_code == 403                                       # no X-CSRFToken header
    res = raw.http.post(raw.base + "login/", json={"username": alice, "password": "pw"},
                        headers={"X-CSRFToken": token + "x"}, timeout=30)
    assert res.status_code == 403                                       # header differs from the cookie
    assert raw.login(alice).status_code == 200
    assert raw.http.cookies["csrftoken"] != token                       # rotated at login, as Django does
    assert raw.post("wipe_user/", {"Uid": alice}).status_code == 403     # admins only
    assert raw.get("csh_args/Digi").status_code == 422                 # only the Oaiofs storage is served
    args = raw.get("csh_args/Oaiofs").json()
    assert set(args) == {"base_url", "token"} and args["base_url"] == live_server.url
    assert raw.get("user_subz/_not__existing__oaio_id_").json()[0]["access_right"] == "x"
    assert raw.post("logout/", {}).status_code == 200
    assert raw.get("current_stamp/").status_code == 401                 # the session is gone


@pytest.mark.parametrize("value", [
    "__import__('os').system('touch /tmp/oaiofs-pwned')", "'text'", "b'a' + b'b'", "b'\\xff\\xfe'",
    "b'" + "a" * 2000 + "'", "bytes(3)", "b'unterminated", "f'{1}'", "[b'a']",
])
def test_hostile_context_headers_are_refused(live_server, value):
    raw = RawSession(live_server, headers={"X-OAIO-user": "b'x'", "X-OAIO-dvc": value, "X-OAIO-app": "b'a'"})
    res = raw.get("login/")
    assert res.status_code == 400 and res.json()["error"] == "invalid_input", res.text
    assert not os.path.exists("/tmp/oaiofs-pwned")


def test_context_headers_decode_non_ascii_device_ids(live_server, make_user, api_for):
    alice = make_user("alice")
    raw = RawSession(live_server, headers={"X-OAIO-user": repr(alice.encode()),
                                           "X-OAIO-dvc": repr("jürgens-pc".encode()), "X-OAIO-app": "b'interop'"})
    assert raw.login(alice).status_code == 200
    body = object_dict("hdr-" + now_stamp(), now_stamp(), {"k": 1}, alice, device_id="", app_id="")
    assert raw.post("register/", body).status_code == 200
    doc = api_for(alice).get_object(body["oaio_id"])
    assert (doc["device_id"], doc["app_id"]) == ("jürgens-pc", "interop")


def test_an_admin_wipes_a_user(live_server, make_user, api_for, tmp_path: Path):
    import subprocess
    import sys
    import uuid
    from tests.conftest import PASSWORD
    admin = f"admin-{uuid.uuid4().hex[:8]}"
    subprocess.run([sys.executable, "-m", "oaiofs", "user", "add", admin, "--admin", "--data",
                    str(live_server.data_dir)], check=True, env=dict(live_server.env, OAIOFS_PASSWORD=PASSWORD),
                   capture_output=True)
    victim, other = make_user("victim"), make_user("other")
    api = api_for(victim)
    mine = api.create_object({"k": 1}, f"wipe-{victim}")["oaio_id"]
    theirs = api_for(other).create_object({}, f"wipe-{other}")["oaio_id"]
    api_for(other).set_subscription(theirs, victim, "U")
    client = seed_client(live_server, admin, tmp_path / "admin")
    try:
        assert client.wipe_user(victim) == ""
        assert seed_client(live_server, victim, tmp_path / "v").wipe_user(other) != ""     # not an admin: 403
    finally:
        close(client)
    with pytest.raises(Gone):
        api_for(victim).get_object(mine)
    assert [s["username"] for s in api_for(other).subscriptions(theirs)] == [other]


def test_hostile_register_and_upload_bodies_change_nothing(live_server, make_user, api_for):
    alice, mallory = make_user("alice"), make_user("mallory")
    oaio_id = f"owned-{alice}"
    api_for(alice).create_object({"k": "alice's"}, oaio_id)
    raw = RawSession(live_server)
    assert raw.login(mallory).status_code == 200
    cases = [
        ("register/", object_dict(oaio_id, now_stamp(), {"k": "stolen"}, mallory), 409),     # id taken
        ("upload/", object_dict(oaio_id, "99991231235959999999", {"k": "x"}, mallory), 422),  # far-future stamp
        ("upload/", object_dict(oaio_id, now_stamp(), {"k": "x"}, mallory), 404),            # a stranger
        ("delete/", {"oaio_id": oaio_id}, 404),
        ("subscribe/", {"oaio_id": oaio_id, "username": mallory, "access_right": "C"}, 404),
        ("register/", object_dict("bad/id", now_stamp(), {}, mallory), 422),
        ("register/", object_dict("old-stamp", "20200101000000000000", {}, mallory), 422),
        ("register/", ["not", "a", "dict"], 422),
        ("register/", object_dict("v", now_stamp(), {"_file_paths": [1]}, mallory), 422),
    ]
    for slug, body, status in cases:
        res = raw.post(slug, body)
        assert res.status_code == status, (slug, body, res.text)
        assert set(res.json()) == {"error", "message", "detail"}
    res = raw.http.post(raw.base + "register/", data=b"{not json", timeout=30,
                        headers={"X-CSRFToken": raw.http.cookies["csrftoken"], "Content-Type": "application/json"})
    assert res.status_code == 400 and res.json()["error"] == "malformed_json"
    huge = object_dict("huge", now_stamp(), {"k": "x" * (3 << 20)}, mallory)
    assert raw.post("register/", huge).status_code == 413
    doc = api_for(alice).get_object(oaio_id)
    assert doc["values"] == {"k": "alice's"} and doc["version"] == 1
    assert [s["username"] for s in api_for(alice).subscriptions(oaio_id)] == [alice]
    assert [o["oaio_id"] for o in raw.get("oaio_stampz/").json()] == []
