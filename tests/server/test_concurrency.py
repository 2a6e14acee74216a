"""Two server processes on one database: concurrent changes are serialised, none is lost."""
from __future__ import annotations

import concurrent.futures

import pytest

from tests.conftest import PASSWORD
from oaiofs.client import ApiClient
from oaiofs.errors import AlreadyExists, VersionConflict

from tests.server.server_helpers import unique_id


@pytest.fixture
def two_servers(server_factory, tmp_path):
    data = tmp_path / "one-database"
    first, second = server_factory(data), server_factory(data)
    alice = first.add_user("alice")
    return [ApiClient(s.url, alice, PASSWORD) for s in (first, second)]


def test_concurrent_merges_through_two_processes_lose_nothing(two_servers):
    oaio_id = two_servers[0].create_object({}, unique_id())["oaio_id"]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda i: two_servers[i % 2].update_values(oaio_id, {f"k{i}": i}), range(30)))
    doc = two_servers[1].get_object(oaio_id)
    assert doc["values"] == {f"k{i}": i for i in range(30)} and doc["version"] == 31
    events, _ = two_servers[0].changes(0, limit=100)
    assert sorted(e["data"]["version"] for e in events) == list(range(1, 32))


def test_same_base_version_wins_exactly_once(two_servers):
    oaio_id = two_servers[0].create_object({"n": 0}, unique_id())["oaio_id"]

    def attempt(i: int) -> str:
        try:
            two_servers[i % 2].update_values(oaio_id, {"n": i}, base_version=1)
            return "won"
        except VersionConflict:
            return "conflict"

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(attempt, range(12)))
    assert outcomes.count("won") == 1 and outcomes.count("conflict") == 11
    assert two_servers[1].get_object(oaio_id)["version"] == 2


def test_same_new_id_is_created_exactly_once(two_servers):
    oaio_id = unique_id()

    def attempt(i: int) -> str:
        try:
            two_servers[i % 2].create_object({"by": i}, oaio_id)
            return "created"
        except AlreadyExists:
            return "exists"

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    assert outcomes.count("created") == 1
    assert len(two_servers[0].subscriptions(oaio_id)) == 1
