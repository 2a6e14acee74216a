"""Hostile input at the edge (issue 13 items 2, 3, 8): every case is a 4xx with the JSON error body,
the connection stays usable and nothing is stored.

Finite numbers only, valid UTF-8 only, bounded JSON nesting, bounded path depth,
ASCII digits only where a number is expected; and a NaN that made it into the
database before cannot break another user's listing.
"""
from __future__ import annotations

import json
import random
import sqlite3

import pytest
import requests

from oaiofs import protocol
from tests.transfers.helpers import TUS, basic_session, new_id, tus_create

JSON = {"Content-Type": "application/json"}


def assert_error(answer: requests.Response, statuses: tuple[int, ...] = (400, 422)) -> None:
    assert answer.status_code in statuses, (answer.status_code, answer.text[:300])
    body = answer.json()
    assert set(body) == {"error", "message", "detail"}, body
    assert answer.headers.get("connection", "").lower() != "close"


@pytest.fixture
def alice(live_server, make_user):
    user = make_user("alice")
    session = basic_session(user)
    yield user, session, live_server.url + protocol.API_PREFIX
    session.close()


def _object(session, api, values=None) -> str:
    answer = session.post(api + "/objects", json={"values": values or {"keep": 1}, "oaio_id": new_id()})
    assert answer.status_code == 201, answer.text
    return answer.json()["oaio_id"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_numbers_in_values_are_refused(alice, literal) -> None:
    _, session, api = alice
    oaio_id = _object(session, api)
    for body in (f'{{"values": {{"x": {literal}}}}}', f'{{"values": {{"x": [1, {{"y": {literal}}}]}}}}'):
        assert_error(session.patch(f"{api}/objects/{oaio_id}", data=body, headers=JSON), (422,))
        new = new_id()
        assert_error(session.post(f"{api}/objects", data=body[:-1] + f', "oaio_id": "{new}"}}', headers=JSON), (422,))
        assert session.get(f"{api}/objects/{new}").status_code == 404
    assert session.get(f"{api}/objects/{oaio_id}").json()["values"] == {"keep": 1}


@pytest.mark.parametrize("mtime", ["inf", "-inf", "nan", "1e400", "Infinity", "١٢"])
def test_non_finite_mtime_on_put_and_tus_is_refused(alice, mtime) -> None:
    user, session, api = alice
    oaio_id = _object(session, api)
    assert_error(session.put(f"{api}/objects/{oaio_id}/files/a.txt", params={"mtime": mtime}, data=b"x"), (422,))
    assert_error(tus_create(session, api.removesuffix(protocol.API_PREFIX), oaio_id, "b.txt", 1, mtime=mtime), (422,))
    assert session.get(f"{api}/objects/{oaio_id}").json()["files"] == []


def test_lone_surrogates_are_refused_everywhere(alice) -> None:
    _, session, api = alice
    oaio_id = _object(session, api)
    assert session.put(f"{api}/objects/{oaio_id}/files/src.txt", data=b"s").status_code == 200
    before = session.get(f"{api}/objects/{oaio_id}").json()
    bad = '"\\ud800"'
    cases = [
        ("post", f"{api}/objects", f'{{"values": {{}}, "oaio_id": {bad}}}'),
        ("post", f"{api}/objects", f'{{"values": {{}}, "oaio_id": "ok-{new_id()}", "app_id": {bad}}}'),
        ("patch", f"{api}/objects/{oaio_id}", f'{{"values": {{{bad}: 1}}}}'),
        ("patch", f"{api}/objects/{oaio_id}", f'{{"values": {{"k": {bad}}}}}'),
        ("patch", f"{api}/objects/{oaio_id}", '{"values": {"k": ["a", {"b": "x\\udfff"}]}}'),
        ("post", f"{api}/objects/{oaio_id}/move", f'{{"src": "src.txt", "dst": {bad}}}'),
        ("post", f"{api}/auth/login", f'{{"username": {bad}, "password": "p"}}'),
    ]
    for method, url, body in cases:
        assert_error(getattr(session, method)(url, data=body, headers=JSON))
    # the same bytes percent-encoded in the URL (ED A0 80 is an encoded surrogate: not UTF-8)
    assert_error(session.get(f"{api}/objects/%ED%A0%80"), (400,))
    assert_error(session.put(f"{api}/objects/{oaio_id}/files/%ED%A0%80.txt", data=b"x"), (400,))
    after = session.get(f"{api}/objects/{oaio_id}").json()
    assert after["values"] == before["values"] and after["files"] == before["files"]


def test_invalid_utf8_in_a_file_path_is_refused_not_stored_as_u_fffd(alice) -> None:
    _, session, api = alice
    oaio_id = _object(session, api)
    for raw in ("%FF.txt", "a%C3.txt", "%C0%AF.txt", "d/%FE%FF/x"):
        assert_error(session.put(f"{api}/objects/{oaio_id}/files/{raw}", data=b"x"), (400,))
    assert_error(session.get(f"{api}/objects", params={"q": b"\xff"}), (400,))
    # a real U+FFFD (valid UTF-8: EF BF BD) is just a character
    assert session.put(f"{api}/objects/{oaio_id}/files/%EF%BF%BD.txt", data=b"y").status_code == 200
    paths = [f["path"] for f in session.get(f"{api}/objects/{oaio_id}").json()["files"]]
    assert paths == ["\ufffd.txt"]


def test_json_nesting_is_bounded(alice) -> None:
    _, session, api = alice
    oaio_id = _object(session, api)
    for depth in (65, 500, 900, 5000):
        nested = "[" * depth + "]" * depth
        assert_error(session.patch(f"{api}/objects/{oaio_id}", data=f'{{"values": {{"k": {nested}}}}}',
                                   headers=JSON), (422,))
    shallow = {"k": json.loads("[" * 60 + "]" * 60)}
    answer = session.patch(f"{api}/objects/{oaio_id}", json={"values": shallow})
    assert answer.status_code == 200, answer.text
    assert session.get(f"{api}/objects/{oaio_id}").json()["values"]["k"] == shallow["k"]


def test_deep_and_long_paths_are_refused(alice) -> None:
    _, session, api = alice
    oaio_id = _object(session, api)
    assert_error(session.put(f"{api}/objects/{oaio_id}/files/" + "a/" * 2000 + "f", data=b"x"), (422,))
    assert_error(session.post(f"{api}/objects/{oaio_id}/dirs/" + "d/" * 300 + "e"), (422,))
    assert_error(session.put(f"{api}/objects/{oaio_id}/files/" + "n" * 5000, data=b"x"), (422,))
    assert session.get(f"{api}/objects/{oaio_id}").json()["files"] == []
    ok = "/".join(["d"] * 200) + "/f"
    assert session.put(f"{api}/objects/{oaio_id}/files/{ok}", data=b"x").status_code == 200


UNICODE_DIGITS = ["²", "³", "¹", "1²", "٣", "５", "𝟗"]     # all isdigit(), none int()-able or ASCII


def header(text: str) -> str | bytes:
    """The text as a header value: Latin-1 as is (the server sees '²'), else its UTF-8 bytes."""
    return text if all(ord(c) < 256 for c in text) else text.encode()


def test_unicode_digits_in_tus_headers_and_base_version_are_refused(alice, live_server) -> None:
    user, session, api = alice
    base = live_server.url
    oaio_id = _object(session, api)
    for digit in UNICODE_DIGITS:
        headers = dict(TUS, **{"Upload-Length": header(digit), "Upload-Metadata": protocol.encode_upload_metadata(
            {protocol.META_OAIO_ID: oaio_id, protocol.META_PATH: "u.txt"})})
        assert_error(session.post(base + protocol.PATH_UPLOADS, headers=headers), (400,))
        assert_error(tus_create(session, base, oaio_id, "v.txt", 1, base_version=digit))
        assert_error(session.put(f"{api}/objects/{oaio_id}/files/w.txt", params={"base_version": digit}, data=b"x"))
    created = tus_create(session, base, oaio_id, "z.txt", 2)
    assert created.status_code == 201
    url = created.headers["Location"]
    url = url if url.startswith("http") else base + url
    for digit in UNICODE_DIGITS:
        answer = session.patch(url, data=b"z", headers=dict(TUS, **{"Upload-Offset": header(digit),
                                                                    "Content-Type": protocol.TUS_CONTENT_TYPE}))
        assert_error(answer, (400,))
    assert session.head(url, headers=TUS).headers["Upload-Offset"] == "0"
    assert session.get(f"{api}/objects/{oaio_id}").json()["files"] == []


def test_random_hostile_bodies_never_answer_5xx(alice) -> None:
    """Seeded fuzz: mutations of a valid PATCH body answer 2xx or a 4xx JSON error, never 5xx."""
    _, session, api = alice
    oaio_id = _object(session, api)
    rnd = random.Random(1313)
    atoms = ['NaN', 'Infinity', '1e400', '"\\ud800"', '"\\udc00x"', '[' * 70 + ']' * 70, '1' * 5000, '"a"', '0',
             '{"\\ud83d": 1}', '-0', '1e-400', 'true', 'null']
    for _ in range(60):
        inner = ", ".join(f'"k{i}": {rnd.choice(atoms)}' for i in range(rnd.randint(1, 3)))
        answer = session.patch(f"{api}/objects/{oaio_id}", data=f'{{"values": {{{inner}}}}}', headers=JSON)
        assert answer.status_code < 500, (inner[:200], answer.text[:200])
        if answer.status_code >= 400:
            assert_error(answer, (400, 409, 422))
    assert session.get(f"{api}/objects").status_code == 200


def test_a_stored_nan_cannot_break_another_users_listing(server_factory, tmp_path) -> None:
    """Data stored before the validation existed (a NaN value, an infinite mtime) still lists."""
    # the old rows are written straight into SQLite (also in the PostgreSQL leg)
    server = server_factory(tmp_path / "nan", env={"OAIOFS_DB_URL": f"sqlite:///{tmp_path / 'nan' / 'oaiofs.db'}"})
    carol, dave = server.add_user("carol"), server.add_user("dave")
    c, d = basic_session(carol), basic_session(dave)
    api = server.url + protocol.API_PREFIX
    oaio_id = _object(c, api)
    assert c.put(f"{api}/objects/{oaio_id}/files/f.txt", data=b"f").status_code == 200
    assert c.put(f"{api}/objects/{oaio_id}/subscriptions/{dave}", json={"access_right": "r"}).status_code == 200
    with sqlite3.connect(server.data_dir / "oaiofs.db") as db:   # what the old server let through
        db.execute("UPDATE objects SET values_json = ? WHERE oaio_id = ?", ('{"x": NaN, "y": Infinity}', oaio_id))
        db.execute("UPDATE files SET mtime = ? WHERE path = 'f.txt'", (float("inf"),))
    for session in (c, d):
        listing = session.get(f"{api}/objects")
        assert listing.status_code == 200, listing.text
        (doc,) = [o for o in listing.json()["objects"] if o["oaio_id"] == oaio_id]
        assert doc["values"] == {"x": None, "y": None}
        one = session.get(f"{api}/objects/{oaio_id}")
        assert one.status_code == 200 and one.json()["values"] == {"x": None, "y": None}
