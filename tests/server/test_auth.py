"""Authentication: tokens, Basic auth, 401s, whoami/stamp/users, logout."""
from __future__ import annotations

import requests
import pytest

from tests.conftest import PASSWORD
from oaiofs import protocol
from oaiofs.client import ApiClient
from oaiofs.errors import Unauthorized, Unavailable

pytestmark = pytest.mark.backend_neutral     # docs/testing.md: not rerun on PostgreSQL + S3


def test_login_whoami_and_users(live_server, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    api = ApiClient(live_server.url, alice, PASSWORD)
    assert api.whoami()["username"] == alice
    assert api.token is not None
    users = api.users()
    assert alice in users and bob in users and users == sorted(users)
    assert protocol.is_stamp(api.stamp())


def test_missing_and_bad_credentials_answer_401_with_challenge(live_server, make_user):
    alice = make_user("alice")
    url = live_server.url + protocol.PATH_WHOAMI
    for kwargs in ({}, {"auth": (alice, "wrong")}, {"auth": ("nobody", PASSWORD)},
                   {"headers": {"Authorization": "Bearer not-a-token"}},
                   {"headers": {"Authorization": "Basic %%%"}}, {"headers": {"Authorization": "Digest x"}}):
        resp = requests.get(url, timeout=10, **kwargs)
        assert resp.status_code == 401, kwargs
        assert resp.json()["error"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="oaiofs"'
    resp = requests.post(live_server.url + protocol.PATH_LOGIN, json={"username": alice, "password": "nope"},
                         timeout=10)
    assert resp.status_code == 401
    with pytest.raises(Unauthorized) as info:
        ApiClient(live_server.url, alice, "wrong-password").whoami()
    assert "wrong-password" not in str(info.value) and "wrong-password" not in repr(info.value)


def test_basic_auth_works(live_server, make_user):
    alice = make_user("alice")
    for _ in range(3):       # repeated Basic checks (cached after the first scrypt) keep working
        resp = requests.get(live_server.url + protocol.PATH_WHOAMI, auth=(alice, PASSWORD), timeout=10)
        assert resp.status_code == 200 and resp.json()["username"] == alice
    for wrong in (PASSWORD + "x", PASSWORD[:-1], ""):
        resp = requests.get(live_server.url + protocol.PATH_WHOAMI, auth=(alice, wrong), timeout=10)
        assert resp.status_code == 401, wrong


def test_logout_invalidates_token_and_client_relogs_in(live_server, make_user):
    alice = make_user("alice")
    api = ApiClient(live_server.url, alice, PASSWORD)
    api.whoami()
    old = api.token
    requests.post(live_server.url + protocol.PATH_LOGOUT, headers={"Authorization": f"Bearer {old}"},
                  timeout=10).raise_for_status()
    resp = requests.get(live_server.url + protocol.PATH_WHOAMI, headers={"Authorization": f"Bearer {old}"},
                        timeout=10)
    assert resp.status_code == 401
    assert api.whoami()["username"] == alice      # one transparent re-login
    assert api.token != old
    token_only = ApiClient(live_server.url, alice, token=old)
    with pytest.raises(Unauthorized):
        token_only.whoami()


def test_credentials_never_in_repr(live_server, make_user):
    alice = make_user("alice")
    api = ApiClient(live_server.url, alice, PASSWORD)
    api.whoami()
    assert PASSWORD not in repr(api) and api.token not in repr(api)


def test_unreachable_server_is_unavailable(tmp_path):
    from tests.conftest import free_port
    api = ApiClient(f"http://127.0.0.1:{free_port()}", "someone", "secret-pw", timeout=(1, 1))
    with pytest.raises(Unavailable) as info:
        api.whoami()
    assert "secret-pw" not in str(info.value)
