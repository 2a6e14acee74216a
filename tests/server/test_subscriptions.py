"""Subscriptions and rights: what each right may do, and above all what it may NOT do."""
from __future__ import annotations

import pytest
import requests

from tests.conftest import PASSWORD
from oaiofs import protocol
from oaiofs.client.api import quote_id
from oaiofs.errors import Forbidden, InvalidValue, NotFound

from tests.server.server_helpers import client, unique_id


@pytest.fixture(scope="module")
def users(live_server):
    """Five users for the whole module (each test makes its own object)."""
    return {role: live_server.add_user(unique_id(role)) for role in ("alice", "bob", "carol", "dave", "eve")}


@pytest.fixture
def shared(live_server, users):
    """A fresh object of alice shared with bob (r), carol (U) and dave (D); eve is a stranger."""
    names = users
    apis = {role: client(live_server, name) for role, name in names.items()}
    oaio_id = apis["alice"].create_object({"v": 1}, unique_id())["oaio_id"]
    apis["alice"].make_dir(oaio_id, "folder")
    for role, right in (("bob", "r"), ("carol", "U"), ("dave", "D")):
        assert apis["alice"].set_subscription(oaio_id, names[role], right) > 0
    return oaio_id, names, apis


def _unchanged(apis, oaio_id, version=2):
    doc = apis["alice"].get_object(oaio_id)
    assert doc["version"] == version and doc["values"] == {"v": 1} and doc["deleted"] is None
    return doc


def test_listing_sorted_like_userz_access(shared):
    oaio_id, names, apis = shared
    subs = apis["bob"].subscriptions(oaio_id)
    assert subs == [{"username": names["alice"], "access_right": "C"},
                    {"username": names["dave"], "access_right": "D"},
                    {"username": names["carol"], "access_right": "U"},
                    {"username": names["bob"], "access_right": "r"}]


def test_read_only_subscriber_cannot_change_anything(shared):
    oaio_id, names, apis = shared
    bob = apis["bob"]
    assert bob.get_object(oaio_id)["access_right"] == "r"
    attempts = [lambda: bob.update_values(oaio_id, {"v": 2}),
                lambda: bob.update_values(oaio_id, {}, mode="replace"),
                lambda: bob.delete_object(oaio_id),
                lambda: bob.make_dir(oaio_id, "mine"),
                lambda: bob.delete_file(oaio_id, "folder"),
                lambda: bob.move(oaio_id, "folder", "renamed"),
                lambda: bob.set_subscription(oaio_id, names["eve"], "r"),
                lambda: bob.set_subscription(oaio_id, names["carol"], "x"),
                lambda: bob.set_subscription(oaio_id, names["bob"], "U")]
    for attempt in attempts:
        with pytest.raises(Forbidden):
            attempt()
    _unchanged(apis, oaio_id)
    assert len(apis["alice"].subscriptions(oaio_id)) == 4


def test_update_right_may_update_but_not_delete_or_share(shared):
    oaio_id, names, apis = shared
    carol = apis["carol"]
    with pytest.raises(Forbidden):
        carol.delete_object(oaio_id)
    with pytest.raises(Forbidden):
        carol.set_subscription(oaio_id, names["eve"], "r")
    _unchanged(apis, oaio_id)
    doc = carol.update_values(oaio_id, {"by": "carol"})
    assert doc["version"] == 3 and doc["access_right"] == "U"
    carol.make_dir(oaio_id, "carols")


def test_delete_right_may_delete(shared):
    oaio_id, _names, apis = shared
    with pytest.raises(Forbidden):
        apis["dave"].set_subscription(oaio_id, _names["eve"], "U")
    assert apis["dave"].delete_object(oaio_id)["deleted"] is not None


def test_strangers_get_404_for_everything(shared, live_server):
    oaio_id, names, apis = shared
    eve = apis["eve"]
    for attempt in (lambda: eve.get_object(oaio_id), lambda: eve.update_values(oaio_id, {"v": 9}),
                    lambda: eve.delete_object(oaio_id), lambda: eve.subscriptions(oaio_id),
                    lambda: eve.set_subscription(oaio_id, names["eve"], "r"),
                    lambda: eve.make_dir(oaio_id, "x"), lambda: eve.delete_file(oaio_id, "folder"),
                    lambda: eve.move(oaio_id, "folder", "y")):
        with pytest.raises(NotFound):
            attempt()
    # same answer as for an id that does not exist at all: nothing leaks
    resp = requests.get(live_server.url + protocol.PATH_OBJECT.format(oaio_id=quote_id(oaio_id)),
                        auth=(names["eve"], PASSWORD), timeout=10)
    missing = requests.get(live_server.url + protocol.PATH_OBJECT.format(oaio_id="no-such-object"),
                           auth=(names["eve"], PASSWORD), timeout=10)
    assert resp.status_code == missing.status_code == 404
    assert resp.json()["error"] == missing.json()["error"] == "not_found"
    assert oaio_id not in [o["oaio_id"] for o in eve.list_objects()[0]]
    _unchanged(apis, oaio_id)


def test_owner_manages_rights_but_cannot_grant_creator_or_leave(shared):
    oaio_id, names, apis = shared
    alice = apis["alice"]
    with pytest.raises(InvalidValue):
        alice.set_subscription(oaio_id, names["eve"], "C")
    with pytest.raises(InvalidValue):
        alice.set_subscription(oaio_id, names["eve"], "w")
    with pytest.raises(Forbidden):
        alice.set_subscription(oaio_id, names["alice"], "x")
    with pytest.raises(NotFound):
        alice.set_subscription(oaio_id, "no-such-user-at-all", "r")
    pid = alice.set_subscription(oaio_id, names["bob"], "U")            # upsert keeps the pid
    assert pid == alice.set_subscription(oaio_id, names["bob"], "U")
    apis["bob"].update_values(oaio_id, {"bob": "now may"})
    assert alice.set_subscription(oaio_id, names["carol"], "x") == 0
    with pytest.raises(NotFound):
        apis["carol"].get_object(oaio_id)
    assert [s["username"] for s in alice.subscriptions(oaio_id)] == [names["alice"], names["dave"], names["bob"]]


def test_subscriber_may_leave_on_their_own(shared):
    oaio_id, names, apis = shared
    assert apis["bob"].set_subscription(oaio_id, names["bob"], "x") == 0
    with pytest.raises(NotFound):
        apis["bob"].get_object(oaio_id)
    assert names["bob"] not in [s["username"] for s in apis["alice"].subscriptions(oaio_id)]
