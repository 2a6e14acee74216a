"""Cart eviction racing another eviction (issue 11).

On PostgreSQL (READ COMMITTED, no write lock) an eviction that read the carts' total
before a concurrent eviction committed, and its candidates after, also evicted the
cart it should have kept. Here the concurrent eviction is injected between the
evicting transaction's statements, deterministically.
"""
from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace

import pytest
from sqlalchemy import event, select

from oaiofs.server import db as dbmod, security
from oaiofs.server.carts import CartService
from oaiofs.server.changes import Notifier
from oaiofs.server.models import Cart, User, utcnow

from ..conftest import create_test_database, matrix_backend

pytestmark = pytest.mark.skipif(matrix_backend() != "postgres-s3",
                                reason="the race needs concurrent writers (PostgreSQL; SQLite serialises them)")


@pytest.fixture
def service():
    url = create_test_database("t_evict_" + uuid.uuid4().hex[:12])
    dbmod.run_migrations(url)
    engine = dbmod.make_engine(url)
    sessions = dbmod.make_sessionmaker(engine, notifier=Notifier())
    state = SimpleNamespace(sessionmaker=sessions, blobs=None,
                            settings=SimpleNamespace(cart_quota_bytes=150_000, cart_ttl_s=600))
    yield CartService(state), sessions, engine
    engine.dispose()


def _add_carts(sessions, sizes: list[int]) -> list[int]:
    now = utcnow()
    with sessions.begin() as db:
        user = User(username="u" + uuid.uuid4().hex[:8], password_hash=security.hash_password("pw"))
        db.add(user)
        db.flush()
        carts = [Cart(uid=f"c{i}", user_id=user.id, status="ready", message="", size=size,
                      created=now, accessed=now + dt.timedelta(seconds=i), expires=now + dt.timedelta(hours=1))
                 for i, size in enumerate(sizes)]
        db.add_all(carts)
        db.flush()
        return [cart.id for cart in carts]


@pytest.mark.parametrize("inject_before", [1, 2, 3])
def test_an_eviction_racing_another_keeps_the_newest_cart(service, inject_before):
    carts, sessions, engine = service
    first, second = _add_carts(sessions, [100_000, 100_000])
    seen = {"statements": 0, "done": False}

    def concurrent_eviction(conn, cursor, statement, params, context, executemany):
        """Before the evicting transaction's n-th statement on carts, another evicts ``first``."""
        if seen["done"] or "carts" not in statement or "pg_" in statement:
            return
        seen["statements"] += 1
        if seen["statements"] == inject_before:
            seen["done"] = True
            assert CartService(carts.state).evict_over_quota(keep=second) == 1   # (listener now inert)

    event.listen(engine, "before_cursor_execute", concurrent_eviction)
    try:
        carts.evict_over_quota()
    finally:
        event.remove(engine, "before_cursor_execute", concurrent_eviction)
    with sessions() as db:
        left = set(db.scalars(select(Cart.id)))
    assert left == {second}, f"evicted more than the quota needs (left: {left})"
