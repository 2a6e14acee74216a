"""Big carts against the real server: a capped create body (413), a file-id limit (422), and a
cart built in batches so that an unrelated user's write is not held up by it."""
from __future__ import annotations

import threading

import pytest
import requests
from sqlalchemy import create_engine, text

from oaiofs import protocol
from oaiofs.server.db import normalize_url
from tests.conftest import wait_until

from .helpers import basic_session, new_id, sha256


def _db_url(server) -> str:
    return normalize_url(server.env.get("OAIOFS_DB_URL") or f"sqlite:///{server.data_dir / 'oaiofs.db'}")


def _entry(oaio_id: str, bundle: str, data: bytes) -> dict[str, str]:
    return {"id": protocol.cart_file_id(oaio_id, "f.txt"), "path": bundle, "hashtype": "sha256",
            "hashsum": sha256(data)}


@pytest.mark.backend_neutral
def test_create_body_over_the_limit_is_refused_with_413(make_user, api_for, live_server):
    user = make_user("big-body")
    url = live_server.url + protocol.PATH_CART.format(uid="huge")
    filler = b'{"fileids": [' + b" " * (protocol.MAX_CART_BODY_BYTES + 1) + b"]}"
    response = basic_session(user).post(url, data=filler, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert response.json()["detail"] == {"limit": protocol.MAX_CART_BODY_BYTES}

    def chunks():                      # no Content-Length: the cap applies while reading
        yield b'{"fileids": ['
        for _ in range(protocol.MAX_CART_BODY_BYTES // (1 << 20) + 2):
            yield b" " * (1 << 20)
        yield b"]}"
    response = basic_session(user).post(url, data=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"] == "too_large"
    assert basic_session(user).get(url).status_code == 404          # nothing was made


@pytest.mark.backend_neutral
def test_more_file_ids_than_the_limit_are_refused_with_422(make_user, api_for, live_server):
    user = make_user("many-ids")
    api = api_for(user)
    oaio_id = new_id()
    api.create_object({}, oaio_id)
    api.put_file(oaio_id, "f.txt", b"x")
    body = {"fileids": [_entry(oaio_id, f"p{i}", b"x") for i in range(protocol.MAX_CART_FILES + 1)]}
    url = live_server.url + protocol.PATH_CART.format(uid="too-many")
    response = basic_session(user).post(url, json=body)
    assert response.status_code == 422, response.text[:200]
    assert str(protocol.MAX_CART_FILES) in response.json()["message"]


def test_a_write_of_another_user_completes_while_a_big_cart_is_built(server_factory, tmp_path):
    server = server_factory()
    owner, other = server.add_user("cart-builder"), server.add_user("bystander")
    a, b = basic_session(owner), basic_session(other)
    oaio_id, other_id = new_id(), new_id()
    data = b"one file, many bundle paths\n"
    base = server.url + protocol.API_PREFIX
    assert a.post(base + "/objects", json={"oaio_id": oaio_id, "values": {}}).status_code < 300
    assert a.put(server.url + protocol.PATH_FILE.format(oaio_id=oaio_id, path="f.txt"), data=data).status_code == 200
    assert b.post(base + "/objects", json={"oaio_id": other_id, "values": {"n": 0}}).status_code < 300
    count = 30_000
    body = {"fileids": [_entry(oaio_id, f"copies/{i:06d}.txt", data) for i in range(count)]}
    done: list[str] = []
    results: dict[str, requests.Response] = {}

    def build() -> None:
        results["cart"] = a.post(server.url + protocol.PATH_CART.format(uid="big"), json=body, timeout=600)
        done.append("cart")

    builder = threading.Thread(target=build)
    builder.start()
    engine = create_engine(_db_url(server))
    try:
        def building() -> bool:        # some rows of the cart are committed, the cart is not finished
            with engine.connect() as conn:
                partial = conn.execute(text("SELECT count(*) FROM cart_files cf JOIN carts c ON c.id = cf.cart_id "
                                            "WHERE c.uid LIKE '#building-%'")).scalar()
            return bool(partial) and "cart" not in done
        wait_until(building, timeout=300, interval=0.02, message="the cart to be half built")
        response = b.patch(base + f"/objects/{other_id}", json={"values": {"n": 1}}, timeout=600)
        done.append("patch")
        assert response.status_code == 200, response.text[:200]
        builder.join(timeout=600)
    finally:
        engine.dispose()
    assert results["cart"].status_code == 201, results["cart"].text[:300]
    assert done == ["patch", "cart"]
    cart = server.url + protocol.PATH_CART.format(uid="big")
    assert a.head(cart).headers[protocol.CART_STATUS_HEADER] == protocol.CART_READY
    assert a.get(cart + "/files/copies/029999.txt").content == data


@pytest.mark.backend_neutral
def test_hostile_cart_bodies_are_refused_with_a_json_4xx(make_user, api_for, live_server):
    """A cart body passes the same strict JSON rules as every other API body (NaN, nesting, lone surrogates)."""
    user = make_user("hostile-cart")
    api = api_for(user)
    oaio_id = new_id()
    api.create_object({}, oaio_id)
    api.put_file(oaio_id, "f.txt", b"x")
    entry = _entry(oaio_id, "f.txt", b"x")
    good = '{"id": "%s", "path": "f.txt", "hashtype": "sha256", "hashsum": "%s"}' % (entry["id"], entry["hashsum"])
    deep = "[" * 100 + "]" * 100
    bodies = {
        "nan": '{"fileids": [%s], "note": NaN}' % good,
        "infinity": '{"fileids": [%s], "note": [1, -Infinity]}' % good,
        "overflow": '{"fileids": [%s], "note": 1e400}' % good,
        "deep": '{"fileids": [%s], "note": %s}' % (good, deep),
        "surrogate-key": '{"fileids": [%s], "\\ud800": 1}' % good,
        "surrogate-path": '{"fileids": [%s]}' % good.replace('"path": "f.txt"', '"path": "a\\udc00.txt"'),
        "surrogate-id": '{"fileids": [%s]}' % good.replace(oaio_id, oaio_id + "\\ud800"),
        "not-utf8": b'{"fileids": [], "note": "\xff"}',
    }
    session = basic_session(user)
    for name, body in bodies.items():
        url = live_server.url + protocol.PATH_CART.format(uid=f"hostile-{name}")
        data = body if isinstance(body, bytes) else body.encode()
        response = session.post(url, data=data, headers={"Content-Type": "application/json"})
        assert response.status_code in (400, 422), (name, response.status_code, response.text[:200])
        assert set(response.json()) == {"error", "message", "detail"}, name
        assert session.head(url).status_code == 404, name                 # no cart was made
    url = live_server.url + protocol.PATH_CART.format(uid="hostile-none")
    assert session.post(url, data=('{"fileids": [%s]}' % good).encode(),
                        headers={"Content-Type": "application/json"}).status_code == 201    # the control


def _requests_in_progress(server) -> float:
    metrics = requests.get(server.url + "/metrics", timeout=30).text
    return sum(float(line.split()[-1]) for line in metrics.splitlines()
               if line.startswith("oaiofs_http_requests_in_progress"))


def test_waiting_cart_long_polls_hold_no_admission_slot(server_factory):
    """Eight ``HEAD ?wait=`` long-polls on one slot: a normal request is still served at once, and the
    long-polls all return when the cart becomes ready (issue 13: a waiting long-poll held its slot)."""
    server = server_factory(env={"OAIOFS_MAX_ACTIVE_REQUESTS": "1", "OAIOFS_MAX_QUEUED_REQUESTS": "16",
                                 "OAIOFS_QUEUE_WAIT_S": "10"})
    user = server.add_user("poller")
    session = basic_session(user)
    base = server.url + protocol.API_PREFIX
    oaio_id = new_id()
    assert session.post(base + "/objects", json={"oaio_id": oaio_id, "values": {"n": 0}}).status_code == 201
    assert session.put(server.url + protocol.PATH_FILE.format(oaio_id=oaio_id, path="f.txt"), data=b"x").ok
    cart = server.url + protocol.PATH_CART.format(uid="polled")
    assert session.post(cart, json={"fileids": [_entry(oaio_id, "f.txt", b"x")]}).status_code == 201
    engine = create_engine(_db_url(server))
    try:
        with engine.begin() as conn:       # hold the cart in preparation (as a slow hash would)
            conn.execute(text("UPDATE carts SET status = :s WHERE uid = 'polled'"), {"s": protocol.CART_STAGING})
        answers: list[requests.Response] = []

        def poll() -> None:
            answers.append(basic_session(user).head(cart, params={"wait": protocol.MAX_CART_WAIT_S}, timeout=300))

        pollers = [threading.Thread(target=poll) for _ in range(8)]
        for thread in pollers:
            thread.start()
        wait_until(lambda: _requests_in_progress(server) >= 8 or answers, timeout=120,
                   message="eight cart long-polls waiting")
        assert not answers, [(a.status_code, a.headers) for a in answers]
        for n in range(1, 6):              # the one slot is free: normal requests are served, not queued out
            response = session.patch(base + f"/objects/{oaio_id}", json={"values": {"n": n}}, timeout=60)
            assert response.status_code == 200, response.text[:200]
            assert session.get(base + "/whoami", timeout=60).status_code == 200
        assert not answers                 # the long-polls are still waiting
        with engine.begin() as conn:
            conn.execute(text("UPDATE carts SET status = :s WHERE uid = 'polled'"), {"s": protocol.CART_READY})
        for thread in pollers:
            thread.join(timeout=300)
    finally:
        engine.dispose()
    assert [a.status_code for a in answers] == [204] * 8
    assert {a.headers[protocol.CART_STATUS_HEADER] for a in answers} == {protocol.CART_READY}
