"""The change feed: cursors, CloudEvents, visibility, long-poll wake-ups (also across server processes)."""
from __future__ import annotations

import concurrent.futures

import requests

from tests.conftest import PASSWORD
from oaiofs import protocol
from oaiofs.client import ApiClient

from tests.server.server_helpers import client, shared_with_bob, unique_id

LONG_WAIT = 30.0


def _types(events, oaio_id=None):
    return [e["type"].rsplit(".", 1)[1] for e in events if oaio_id is None or e["subject"] == oaio_id]


def test_cursor_semantics_and_cloudevent_shape(live_server, make_user):
    alice = make_user("alice")
    api = client(live_server, alice)
    _, start = api.list_objects()
    oaio_id = api.create_object({"v": 1}, unique_id())["oaio_id"]
    api.update_values(oaio_id, {"v": 2})
    api.make_dir(oaio_id, "d")
    api.delete_object(oaio_id)
    events, cursor = api.changes(start)
    assert _types(events) == ["created", "updated", "updated", "deleted"]
    assert [e["data"]["version"] for e in events] == [1, 2, 3, 4]
    first = events[0]
    assert first["specversion"] == "1.0" and first["id"] == str(int(first["id"]))
    assert first["source"] == "/oaiofs/objects" and first["subject"] == oaio_id
    assert first["datacontenttype"] == "application/json" and first["time"].endswith("Z")
    assert first["data"]["actor"] == alice and first["data"]["oaio_id"] == oaio_id
    assert events[1]["data"]["values_changed"] is True
    assert events[2]["data"]["changed_files"] == ["d"]
    assert cursor == int(events[-1]["id"])
    assert [int(e["id"]) for e in events] == sorted(int(e["id"]) for e in events)
    assert api.changes(cursor) == ([], cursor)                     # nothing new: same cursor
    page, page_cursor = api.changes(start, limit=2)
    assert page == events[:2] and page_cursor == int(events[1]["id"])
    rest, _ = api.changes(page_cursor)
    assert rest == events[2:]
    # a cursor from the future (e.g. of a re-created database) is brought back to the present
    future_events, present = api.changes(cursor + 10 ** 9)
    assert future_events == [] and cursor <= present < cursor + 10 ** 9


def test_feed_shows_only_what_the_caller_may_see(live_server, make_user):
    alice, bob, eve = make_user("alice"), make_user("bob"), make_user("eve")
    a, b, e = client(live_server, alice), client(live_server, bob), client(live_server, eve)
    _, b_start = b.list_objects()
    _, e_start = e.list_objects()
    oaio_id = a.create_object({}, unique_id())["oaio_id"]
    a.update_values(oaio_id, {"before": "sharing"})                # bob must not see this one
    a.set_subscription(oaio_id, bob, "r")
    a.update_values(oaio_id, {"after": "sharing"})
    a.set_subscription(oaio_id, bob, "x")                          # unsubscription reaches bob
    a.update_values(oaio_id, {"after": "unsharing"})               # ... and then nothing more
    a.set_subscription(oaio_id, bob, "U")
    a.delete_object(oaio_id)                                       # the tombstone reaches bob
    events, _ = b.changes(b_start)
    assert _types(events, oaio_id) == ["subscribed", "updated", "unsubscribed", "subscribed", "deleted"]
    assert events[0]["data"]["access_right"] == "r" and events[3]["data"]["access_right"] == "U"
    assert events[2]["data"]["access_right"] == "x"
    assert e.changes(e_start)[0] == []


def test_self_unsubscription_emits_to_the_leaver(live_server, make_user):
    s = shared_with_bob(live_server, make_user)
    s.b.set_subscription(s.oaio_id, s.bob, "x")
    events, _ = s.b.changes(s.cursor)
    assert _types(events, s.oaio_id) == ["unsubscribed"]


def test_long_poll_wakes_when_another_user_changes_a_shared_object(live_server, make_user):
    s = shared_with_bob(live_server, make_user)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        poll = pool.submit(s.b.changes, s.cursor, LONG_WAIT)
        s.a.update_values(s.oaio_id, {"ping": 1})
        events, new_cursor = poll.result(timeout=LONG_WAIT - 5)     # must not need the whole wait
    assert _types(events, s.oaio_id) == ["updated"] and events[0]["data"]["actor"] == s.alice
    assert new_cursor > s.cursor


def test_long_poll_sees_changes_made_by_another_server_process(server_factory, tmp_path):
    data = tmp_path / "shared-data"
    first = server_factory(data)
    second = server_factory(data)          # same SQLite database, another process
    alice, bob = first.add_user("alice"), first.add_user("bob")
    a = ApiClient(second.url, alice, PASSWORD)
    b = ApiClient(first.url, bob, PASSWORD)
    oaio_id = a.create_object({}, unique_id())["oaio_id"]
    a.set_subscription(oaio_id, bob, "r")
    _, cursor = b.list_objects()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        poll = pool.submit(b.changes, cursor, LONG_WAIT)
        a.update_values(oaio_id, {"from": "the other process"})
        events, _ = poll.result(timeout=LONG_WAIT - 5)
    assert _types(events, oaio_id) == ["updated"]
    assert b.get_object(oaio_id)["values"] == {"from": "the other process"}


def test_bad_feed_parameters_are_refused(live_server, make_user):
    alice = make_user("alice")
    url = live_server.url + protocol.PATH_CHANGES
    for params in ({"cursor": -1}, {"cursor": "abc"}, {"wait": 1000}, {"wait": -1}, {"limit": 0},
                   {"limit": 10 ** 9}):
        resp = requests.get(url, params=params, auth=(alice, PASSWORD), timeout=10)
        assert resp.status_code == 422, params
        assert resp.json()["error"] == "invalid_value"
    assert requests.get(url, timeout=10).status_code == 401
