"""Server administration: ``oaiofs user list/passwd/del/disable/enable/admin`` and the admin API (issue 17)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from tests.compat.helpers import RawSession
from tests.conftest import PASSWORD

pytestmark = pytest.mark.timeout(120)
API = "/api/v1"


def user_cli(server, *args: str, password: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in server.env.items() if k != "OAIOFS_PASSWORD"}
    if password is not None:
        env["OAIOFS_PASSWORD"] = password
    storage = [a for a in server.extra_args if a.startswith(("--db", "--blobs"))]
    result = subprocess.run([sys.executable, "-m", "oaiofs", "user", *args, "--data", str(server.data_dir),
                             *storage], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                            timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"user {args} -> {result.returncode}: {result.stderr}")
    return result


def login(server, name: str, password: str = PASSWORD) -> requests.Response:
    return requests.post(server.url + API + "/auth/login", json={"username": name, "password": password}, timeout=30)


def whoami(server, *, token: str | None = None, basic: tuple[str, str] | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(server.url + API + "/whoami", headers=headers, auth=basic, timeout=30)


def listed(server) -> dict[str, dict]:
    return {u["username"]: u for u in json.loads(user_cli(server, "list", "--json").stdout)}


def test_disable_answers_401_for_token_basic_and_login(live_server, make_user):
    name = make_user("dis")
    token = login(live_server, name).json()["token"]
    assert whoami(live_server, token=token).status_code == 200
    assert whoami(live_server, basic=(name, PASSWORD)).status_code == 200
    compat = RawSession(live_server)
    assert compat.login(name).status_code == 200 and compat.get("current_stamp/").status_code == 200

    assert "disabled" in user_cli(live_server, "disable", name).stdout
    assert listed(live_server)[name]["disabled"] is True
    for resp in (whoami(live_server, token=token), whoami(live_server, basic=(name, PASSWORD)),
                 login(live_server, name)):
        assert resp.status_code == 401
        assert resp.json()["error"] == "account_disabled" and "disabled" in resp.json()["message"]
    assert whoami(live_server, basic=(name, "wrong")).json()["error"] == "unauthorized"   # no leak of the flag
    assert compat.get("current_stamp/").status_code == 401      # the ae-client session of a disabled user too
    assert RawSession(live_server).login(name).status_code == 401

    user_cli(live_server, "enable", name)
    assert whoami(live_server, token=token).status_code == 200        # tokens survive a disable/enable
    assert whoami(live_server, basic=(name, PASSWORD)).status_code == 200
    assert compat.get("current_stamp/").status_code == 200

    missing = user_cli(live_server, "disable", name + "-nobody", check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_passwd_changes_the_password_and_revokes_tokens(live_server, make_user):
    name = make_user("pw")
    token = login(live_server, name).json()["token"]
    user_cli(live_server, "passwd", name, password="n3w secret")
    assert whoami(live_server, token=token).status_code == 401
    assert login(live_server, name).status_code == 401
    assert whoami(live_server, basic=(name, "n3w secret")).status_code == 200
    empty = user_cli(live_server, "passwd", name, password="", check=False)
    assert empty.returncode == 2 and "empty" in empty.stderr
    assert whoami(live_server, basic=(name, "n3w secret")).status_code == 200       # unchanged
    assert user_cli(live_server, "passwd", name + "-x", password="p", check=False).returncode == 1


def test_user_del_transfers_shared_objects_and_deletes_private_ones(live_server, make_user, api_for):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    api_a, api_b, api_c = api_for(alice), api_for(bob), api_for(carol)
    shared = api_a.create_object({"_name": "Shared"})["oaio_id"]
    api_a.put_file(shared, "a.txt", b"kept")
    api_a.set_subscription(shared, bob, "r")
    api_a.set_subscription(shared, carol, "U")
    private = api_a.create_object({"_name": "Private"})["oaio_id"]
    bobs = api_b.create_object({"_name": "Bobs"})["oaio_id"]
    api_b.set_subscription(bobs, alice, "D")

    result = json.loads(user_cli(live_server, "del", alice, "--json").stdout)
    assert result["transferred"] == {shared: carol}            # U beats r
    assert result["deleted"] == [private]
    assert alice not in listed(live_server)
    doc = api_c.get_object(shared)
    assert (doc["owner"], doc["access_right"]) == (carol, "C")
    assert api_c.subscriptions(shared) == [{"username": carol, "access_right": "C"},
                                           {"username": bob, "access_right": "r"}]
    assert api_c.get_file(shared, "a.txt") == b"kept"
    assert api_b.subscriptions(bobs) == [{"username": bob, "access_right": "C"}]
    api_c.set_subscription(shared, bob, "U")                    # the new creator manages the share
    assert login(live_server, alice).status_code == 401
    assert user_cli(live_server, "del", alice, check=False).returncode == 1


def test_admin_api(live_server, make_user):
    boss, worker = make_user("boss"), make_user("worker")
    assert requests.get(live_server.url + API + "/admin/users", auth=(worker, PASSWORD), timeout=30).status_code == 403
    user_cli(live_server, "admin", boss)
    auth = (boss, PASSWORD)
    users = requests.get(live_server.url + API + "/admin/users", auth=auth, timeout=30).json()["users"]
    assert {u["username"]: u["is_admin"] for u in users}[boss] is True
    url = live_server.url + API + "/admin/users/" + worker
    resp = requests.patch(url, json={"disabled": True}, auth=auth, timeout=30)
    assert resp.status_code == 200 and resp.json()["disabled"] is True
    assert whoami(live_server, basic=(worker, PASSWORD)).json()["error"] == "account_disabled"
    bad = requests.patch(url, json={"disabled": "yes"}, auth=auth, timeout=30)
    assert bad.status_code == 422 and set(bad.json()) == {"error", "message", "detail"}
    assert requests.patch(live_server.url + API + "/admin/users/" + boss, json={"disabled": True}, auth=auth,
                          timeout=30).status_code == 403              # not yourself
    resp = requests.patch(url, json={"disabled": False, "password": "other"}, auth=auth, timeout=30)
    assert resp.status_code == 200 and whoami(live_server, basic=(worker, "other")).status_code == 200
    new = requests.post(live_server.url + API + "/admin/users", json={"username": worker + "-2", "password": "p"},
                        auth=auth, timeout=30)
    assert new.status_code == 201
    again = requests.post(live_server.url + API + "/admin/users", json={"username": worker + "-2", "password": "p"},
                          auth=auth, timeout=30)
    assert again.status_code == 409
    bad_name = requests.post(live_server.url + API + "/admin/users", json={"username": "a/b", "password": "p"},
                             auth=auth, timeout=30)
    assert bad_name.status_code == 422
    assert requests.delete(url, auth=auth, timeout=30).json()["username"] == worker
    assert requests.delete(url, auth=auth, timeout=30).status_code == 404
    user_cli(live_server, "admin", boss, "--revoke")
    assert requests.get(live_server.url + API + "/admin/users", auth=auth, timeout=30).status_code == 403
