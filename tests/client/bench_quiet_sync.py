"""Quiet-sync cost of OaioClient: change-feed sync vs. a forced full listing (not a test; prints JSON).

Run: python tests/client/bench_quiet_sync.py [N objects shared with the syncing user]
"""
import sys, time, tempfile, pathlib, json, statistics
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from conftest import ServerProcess, PASSWORD
from oaiofs.client.api import ApiClient
from oaiofs.client.oaio_client import OaioClient
N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
tmp = pathlib.Path(tempfile.mkdtemp())
srv = ServerProcess(tmp / "data").start()
try:
    srv.add_user("alice"); srv.add_user("bob")
    with ApiClient(srv.url, "alice", PASSWORD) as api:
        for i in range(N):
            d = api.create_object({"i": i, "text": "x" * 200})
            api.set_subscription(d["oaio_id"], "bob", "r")
    bob = OaioClient(f"127.0.0.1:{srv.port}", {"username": "bob", "password": PASSWORD}, device_id="m", client_root=str(tmp / "b"))
    t = time.perf_counter(); assert bob.synchronize_with_server_if_online(); first = time.perf_counter() - t
    def timed(force_listing):
        out = []
        for _ in range(15):
            if force_listing:
                st = tmp / "b" / "state.json"; st.write_text("{}")
            t = time.perf_counter(); assert bob.synchronize_with_server_if_online(), bob.error_message; out.append(time.perf_counter() - t)
        return statistics.median(out)
    feed, listing = timed(False), timed(True)
    print(json.dumps({"objects": N, "first_sync_s": round(first, 3), "quiet_sync_feed_ms": round(feed * 1000, 1),
                      "quiet_sync_full_listing_ms": round(listing * 1000, 1)}))
finally:
    srv.stop()
