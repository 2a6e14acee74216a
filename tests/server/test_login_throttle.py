"""Login throttling (issue 13 item 4): a wrong-password flood is refused early with 429 + Retry-After,
costs no hashing once throttled, leaves other users alone; unknown names cost one scrypt like known
ones; the token lifetime is a setting."""
from __future__ import annotations

import datetime as dt
import hashlib
import threading

import pytest
import requests
from sqlalchemy.orm import Session

from oaiofs import protocol
from oaiofs.errors import TooManyRequests
from oaiofs.server import deps, security
from oaiofs.server.db import make_engine, run_migrations
from oaiofs.server.models import User
from oaiofs.server.throttle import LoginThrottle
from tests.conftest import PASSWORD, wait_until

pytestmark = pytest.mark.backend_neutral     # docs/testing.md: not rerun on PostgreSQL + S3


def _whoami(server, user: str, password: str) -> requests.Response:
    return requests.get(server.url + protocol.PATH_WHOAMI, auth=(user, password), timeout=60)


def test_wrong_password_flood_is_refused_with_429_and_other_users_are_unaffected(server_factory) -> None:
    server = server_factory()
    alice, bob = server.add_user("alice"), server.add_user("bob")
    assert _whoami(server, alice, PASSWORD).status_code == 200        # alice's mount, verified before the flood
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def flood() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                answer = session.get(server.url + protocol.PATH_WHOAMI, auth=(alice, "wrong"), timeout=60)
                with lock:
                    statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                if answer.status_code == 429:
                    body = answer.json()
                    assert body["error"] == "too_many_requests" and set(body) == {"error", "message", "detail"}
                    assert int(answer.headers["Retry-After"]) >= 1

    threads = [threading.Thread(target=flood) for _ in range(20)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: statuses.get(429, 0) >= 200, timeout=120, message="the flood to be throttled")
        # meanwhile: bob (never seen before, same address) and alice's known-good credentials work
        for _ in range(3):
            assert _whoami(server, bob, PASSWORD).status_code == 200
            assert _whoami(server, alice, PASSWORD).status_code == 200
        token = requests.post(server.url + protocol.PATH_LOGIN, json={"username": bob, "password": PASSWORD},
                              timeout=60)
        assert token.status_code == 200
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert set(statuses) == {401, 429}, statuses
    assert statuses[401] <= 20, statuses      # only a few wrong passwords were ever hashed
    # the throttled name: even a login with the right password waits (no new verification)
    answer = requests.post(server.url + protocol.PATH_LOGIN, json={"username": alice, "password": "wrong2"},
                           timeout=60)
    assert answer.status_code == 429 and "Retry-After" in answer.headers


def test_unknown_user_names_are_throttled_too(server_factory) -> None:
    server = server_factory()
    codes = [_whoami(server, "nobody-here", "x").status_code for _ in range(12)]
    assert codes[:5] == [401] * 5 and 429 in codes[5:], codes


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    run_migrations(url)
    engine = make_engine(url)
    with Session(engine) as session:
        session.add(User(username="known", password_hash=security.hash_password("right"), is_admin=False))
        session.commit()
        yield session
    engine.dispose()


def test_unknown_user_costs_one_scrypt_like_a_known_one(db, monkeypatch) -> None:
    """No timing oracle: the same work (one scrypt with the same parameters) for both kinds of failure."""
    calls: list[tuple[int, int, int]] = []
    real = hashlib.scrypt

    def counting(password, *, salt, n, r, p, dklen=64, **kw):   # type: ignore[no-untyped-def]
        calls.append((n, r, p))
        return real(password, salt=salt, n=n, r=r, p=p, dklen=dklen, **kw)

    security.burn_password_check("warm-up")                      # the dummy hash is made once
    monkeypatch.setattr(deps, "LOGIN_THROTTLE", LoginThrottle())
    monkeypatch.setattr(hashlib, "scrypt", counting)
    assert deps.user_from_password(db, "known", "wrong", "10.0.0.1") is None
    known = list(calls)
    calls.clear()
    assert deps.user_from_password(db, "unknown-name", "wrong", "10.0.0.2") is None
    assert calls == known == [(security.SCRYPT_N, security.SCRYPT_R, security.SCRYPT_P)]


def test_throttle_backs_off_per_user_and_per_address_and_resets_on_success() -> None:
    throttle = LoginThrottle(free_per_user=2, free_per_address=4, base_delay_s=60)
    for _ in range(2):
        throttle.check("a", "1.1.1.1")
        throttle.failed("a", "1.1.1.1")
    with pytest.raises(TooManyRequests) as info:
        throttle.check("a", "2.2.2.2")                           # the name backs off, whatever the address
    assert info.value.http_status == 429 and int(info.value.headers["Retry-After"]) >= 59
    throttle.check("b", "1.1.1.1")                               # the address is not at its limit yet
    throttle.failed("b", "1.1.1.1")
    throttle.failed("c", "1.1.1.1")
    with pytest.raises(TooManyRequests):
        throttle.check("d", "1.1.1.1")                           # 4 failures from one address, any names
    throttle.check("d", "3.3.3.3")
    throttle.succeeded("a")
    throttle.check("a", "2.2.2.2")


def test_token_lifetime_is_a_serve_option(server_factory) -> None:
    server = server_factory(extra_args=["--token-ttl", "3"])
    alice = server.add_user("alice")
    login = requests.post(server.url + protocol.PATH_LOGIN, json={"username": alice, "password": PASSWORD},
                          timeout=60).json()
    expires = dt.datetime.fromisoformat(login["expires"])
    assert expires <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=10)
    bearer = {"Authorization": f"Bearer {login['token']}"}
    assert requests.get(server.url + protocol.PATH_WHOAMI, headers=bearer, timeout=60).status_code == 200
    wait_until(lambda: requests.get(server.url + protocol.PATH_WHOAMI, headers=bearer, timeout=60).status_code == 401,
               timeout=60, interval=0.5, message="the token to expire")
