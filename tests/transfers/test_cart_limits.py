"""Big carts against the real server: a capped create body (413), a file-id limit (422), and a
cart built in batches so that an unrelated user's write is not held up by it."""
from __future__ import annotations

import threading

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
