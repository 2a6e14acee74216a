"""Quiet-sync cost of OaioClient: change-feed sync vs. a forced full listing (not a test; prints JSON).

Run: ``python tests/client/bench_quiet_sync.py [N]`` — N objects are shared with the
syncing user on a fresh local server; the median of 15 syncs with nothing new is
measured once following the change feed and once forced to list every object.
"""
from __future__ import annotations

import json
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tests.conftest import PASSWORD, ServerProcess  # noqa: E402

from oaiofs.client.api import ApiClient  # noqa: E402
from oaiofs.client.oaio_client import OaioClient  # noqa: E402

ROUNDS = 15


def median_sync_s(client: OaioClient, force_listing: bool) -> float:
    """Median seconds of ``ROUNDS`` quiet syncs (dropping the saved cursor forces a full listing)."""
    times = []
    for _ in range(ROUNDS):
        if force_listing:
            (client.client_root / "state.json").write_text("{}")
        start = time.perf_counter()
        assert client.synchronize_with_server_if_online(), client.error_message
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(count: int) -> dict[str, float]:
    tmp = pathlib.Path(tempfile.mkdtemp())
    server = ServerProcess(tmp / "data").start()
    try:
        server.add_user("alice")
        server.add_user("bob")
        with ApiClient(server.url, "alice", PASSWORD) as api:
            for i in range(count):
                doc = api.create_object({"i": i, "text": "x" * 200})
                api.set_subscription(doc["oaio_id"], "bob", "r")
        bob = OaioClient(server.url, {"username": "bob", "password": PASSWORD}, device_id="bench",
                         client_root=str(tmp / "bob"))
        start = time.perf_counter()
        assert bob.synchronize_with_server_if_online(), bob.error_message
        first = time.perf_counter() - start
        return {"objects": count, "first_sync_s": round(first, 3),
                "quiet_sync_feed_ms": round(median_sync_s(bob, False) * 1000, 1),
                "quiet_sync_full_listing_ms": round(median_sync_s(bob, True) * 1000, 1)}
    finally:
        server.stop()


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)))
