"""Carts against the real server: rights re-checked on every request, member names of ``filename``."""
from __future__ import annotations

import io
import tarfile

import pytest

from oaiofs import protocol

from .helpers import basic_session, new_id, sha256

DOC = b"alice's document\n"


def _cart_of_doc(make_user, api_for, live_server):
    """alice's object with d/doc.txt, read-only for bob, and bob's ready cart of it."""
    alice, bob = make_user("cr-alice"), make_user("cr-bob")
    a = api_for(alice)
    oaio_id = new_id()
    a.create_object({}, oaio_id)
    a.put_file(oaio_id, "d/doc.txt", DOC)
    a.put_file(oaio_id, "other.txt", b"x")
    a.set_subscription(oaio_id, bob, "r")
    s = basic_session(bob)
    uid = "cart-" + new_id()
    base = live_server.url + protocol.PATH_CART.format(uid=uid)
    body = {"fileids": [{"id": protocol.cart_file_id(oaio_id, "d/doc.txt"), "path": "d/doc.txt",
                         "hashtype": "sha256", "hashsum": sha256(DOC)}]}
    assert s.post(base, json=body).status_code == 201
    return a, s, base, oaio_id, bob


def _assert_refused(response) -> None:
    assert response.status_code == 403, (response.status_code, response.text[:300])
    body = response.json()
    assert body["error"] == "forbidden" and set(body) == {"error", "message", "detail"}


@pytest.mark.parametrize("revoke", ["unsubscribe", "delete"])
def test_cart_requests_recheck_the_right_to_read(make_user, api_for, live_server, revoke):
    a, s, base, oaio_id, bob = _cart_of_doc(make_user, api_for, live_server)
    assert s.head(base).headers[protocol.CART_STATUS_HEADER] == protocol.CART_READY
    assert s.get(base + "/files/d/doc.txt").content == DOC
    assert s.get(base, headers={"Range": "bytes=0-1023"}).status_code == 206
    if revoke == "unsubscribe":
        a.set_subscription(oaio_id, bob, protocol.NO_ACCESS_RIGHT)
    else:
        a.delete_object(oaio_id)
    _assert_refused(s.get(base + "/files/d/doc.txt"))
    _assert_refused(s.get(base))
    _assert_refused(s.get(base, headers={"Range": "bytes=0-1023"}))
    assert s.head(base).status_code == 403
    assert s.head(base + "/files/d/doc.txt").status_code == 403
    assert s.delete(base).status_code == 200          # the cart itself is still bob's to delete
    assert s.get(base).status_code == 404


HOSTILE_NAMES = ["...tar", "..tar", "../x.tar", "..\\x.tar", "..\\..\\x.tar", "a\\b.tar", "x/../../y.tar",
                 "/abs.tar", ".", "..", "\\", "tab\there.tar", "ok.tar", "..x.tar", "ünï.tar", "plain"]


def _safe_member(name: str) -> bool:
    parts = name.split("/")
    return (not name.startswith("/") and "\\" not in name and ".." not in parts and "." not in parts
            and all(ord(c) >= 32 for c in name))


def test_tar_member_names_are_safe_for_any_filename(make_user, api_for, live_server):
    _a, s, base, _oaio_id, _bob = _cart_of_doc(make_user, api_for, live_server)
    for filename in HOSTILE_NAMES:
        response = s.get(base, params={"filename": filename})
        if response.status_code == 422:
            body = response.json()
            assert body["error"] == "invalid_value" and set(body) == {"error", "message", "detail"}
            continue
        assert response.status_code == 200, (filename, response.text[:200])
        with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
            members = tar.getmembers()
            assert members and all(_safe_member(m.name) for m in members), (filename, [m.name for m in members])
            assert tar.extractfile(members[0]).read() == DOC
        top = members[0].name.split("/")[0]
        assert filename in (top, top + ".tar"), filename        # a good name is kept as it is
    assert s.get(base, params={"filename": "ok.tar"}).status_code == 200
