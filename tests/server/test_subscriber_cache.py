"""Server: a write loads its object and every subscription in one query, and the change event reuses it.

The subscribers are remembered for the rest of the transaction (``server/subscriber_cache.py``);
every way a subscription can change inside that transaction must be seen by the next event:
a grant, a removal, a pending (unflushed) row, a bulk delete. Against the real services and
in-process, on SQLite or (with the services, see ``tests/conftest.py``) PostgreSQL, where the
load is ``SELECT … FOR UPDATE OF objects`` over a join; the HTTP feed semantics are covered by
``test_changes.py``.
"""
from __future__ import annotations

import base64
import contextlib
import uuid
from typing import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, event, select

from tests.conftest import create_test_database, matrix_backend
from oaiofs import protocol
from oaiofs.errors import NotFound
from oaiofs.server import changes, db as dbmod, objects, security, subscriptions
from oaiofs.server.access import load_object
from oaiofs.server.app import create_app
from oaiofs.server.models import Change, Subscription, User
from oaiofs.server.settings import ServerSettings

PW = "pw-subs-cache-1"


@pytest.fixture
def app(tmp_path):
    db_url = (create_test_database("subs_" + uuid.uuid4().hex[:12]) if matrix_backend() == "postgres-s3"
              else f"sqlite:///{tmp_path / 'subs.db'}")
    settings = ServerSettings(data_dir=tmp_path / "data", db_url=db_url)
    dbmod.run_migrations(settings.database_url)
    application = create_app(settings)
    with application.state.oaiofs.sessionmaker.begin() as db:
        for name in ("alice", "bob", "carol"):
            db.add(User(username=name, password_hash=security.hash_password(PW)))
    return application


def _session(app):
    return app.state.oaiofs.sessionmaker.begin()


def _user(db, name: str) -> User:
    return db.scalar(select(User).where(User.username == name))


def _events(app, name: str, oaio_id: str) -> list[str]:
    with _session(app) as db:
        uid = _user(db, name).id
        return [c.type.rsplit(".", 1)[1] for c in db.scalars(
            select(Change).where(Change.user_id == uid, Change.oaio_id == oaio_id).order_by(Change.id))]


def _new_object(app, oaio_id: str) -> None:
    with _session(app) as db:
        objects.create_object(db, _user(db, "alice"), {"v": 0}, oaio_id)


def test_a_grant_inside_the_transaction_reaches_the_next_event(app):
    _new_object(app, "grant-1")
    with _session(app) as db:
        alice = _user(db, "alice")
        obj, _right = load_object(db, alice, "grant-1", "update", for_update=True)   # subscribers remembered
        subscriptions.set_subscription(db, alice, "grant-1", "bob", "r")
        objects.update_values(db, alice, obj, {"v": 1})
    assert _events(app, "bob", "grant-1") == ["subscribed", "updated"]


def test_a_removal_inside_the_transaction_stops_the_next_event(app):
    _new_object(app, "remove-1")
    with _session(app) as db:
        subscriptions.set_subscription(db, _user(db, "alice"), "remove-1", "bob", "U")
    with _session(app) as db:
        alice = _user(db, "alice")
        obj, _right = load_object(db, alice, "remove-1", "update", for_update=True)
        subscriptions.set_subscription(db, alice, "remove-1", "bob", "x")
        objects.update_values(db, alice, obj, {"v": 1})
    assert _events(app, "bob", "remove-1") == ["subscribed", "unsubscribed"]


def test_a_pending_or_bulk_change_is_seen_too(app):
    _new_object(app, "pending-1")
    with _session(app) as db:
        alice, carol = _user(db, "alice"), _user(db, "carol")
        obj, _right = load_object(db, alice, "pending-1", "update", for_update=True)
        db.add(Subscription(object_id=obj.id, user_id=carol.id, access_right="r"))     # not flushed yet
        assert set(changes.subscriber_ids(db, obj)) == {alice.id, carol.id}
    with _session(app) as db:
        alice, carol = _user(db, "alice"), _user(db, "carol")
        obj, _right = load_object(db, alice, "pending-1", "update", for_update=True)
        assert set(changes.subscriber_ids(db, obj)) == {alice.id, carol.id}
        db.execute(delete(Subscription).where(Subscription.user_id == carol.id))       # bulk: no ORM objects
        objects.update_values(db, alice, obj, {"v": 2})
    assert _events(app, "carol", "pending-1") == []
    assert _events(app, "alice", "pending-1") == ["created", "updated"]


def test_nothing_is_remembered_across_transactions(app):
    _new_object(app, "across-1")
    db = app.state.oaiofs.sessionmaker()
    try:
        with db.begin():                        # remembers: alice only
            obj, _right = load_object(db, _user(db, "alice"), "across-1", "update", for_update=True)
        with _session(app) as other:            # another session grants bob meanwhile
            subscriptions.set_subscription(other, _user(other, "alice"), "across-1", "bob", "r")
        with db.begin():                        # same session, next transaction: reads again
            assert _user(db, "bob").id in changes.subscriber_ids(db, obj)
    finally:
        db.close()


def test_strangers_and_rights_through_the_one_query_load(app):
    _new_object(app, "rights-1")
    with _session(app) as db:
        subscriptions.set_subscription(db, _user(db, "alice"), "rights-1", "bob", "r")
    with _session(app) as db:
        for for_update in (False, True):
            assert load_object(db, _user(db, "alice"), "rights-1", "read", for_update=for_update)[1] == "C"
            assert load_object(db, _user(db, "bob"), "rights-1", "read", for_update=for_update)[1] == "r"
            for name, oaio_id in (("carol", "rights-1"), ("alice", "no-such-object")):
                with pytest.raises(NotFound):
                    load_object(db, _user(db, name), oaio_id, "read", for_update=for_update)


@contextlib.contextmanager
def _statements(app) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn, _cursor, sql, *_args):
        seen.append(sql)

    engine = app.state.oaiofs.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_values_update_reads_the_subscriptions_once_and_still_notifies_every_subscriber(app):
    http = TestClient(app)
    auth = {"Authorization": "Basic " + base64.b64encode(f"alice:{PW}".encode()).decode()}
    base = f"{protocol.API_PREFIX}/objects"
    assert http.post(base, json={"oaio_id": "count-1"}, headers=auth).status_code == 201
    for name in ("bob", "carol"):
        assert http.put(f"{base}/count-1/subscriptions/{name}", json={"access_right": "r"},
                        headers=auth).status_code in (200, 201)
    with _statements(app) as seen:
        answer = http.patch(f"{base}/count-1", json={"values": {"v": 1}}, headers=auth)
    assert answer.status_code == 200, answer.text
    reads = [sql for sql in seen if sql.lstrip().upper().startswith("SELECT") and "subscriptions" in sql]
    assert len(reads) == 1, reads       # the old code read the right and then the subscribers: 2
    for name in ("alice", "bob", "carol"):
        assert _events(app, name, "count-1")[-1] == "updated"
