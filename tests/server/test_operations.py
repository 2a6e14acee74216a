"""Operating the server: /metrics, /healthz, offline /docs and /redoc, access log, JSON logs."""
from __future__ import annotations

import json
import re
import shutil

import pytest
import requests

from tests.conftest import PASSWORD, wait_until

pytestmark = pytest.mark.timeout(180)
OUTSIDE_HOST = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def _scrape(url: str) -> dict[str, float]:
    values = {}
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_metrics_move_with_requests_and_uploads(live_server, make_user, api_for):
    user = make_user("metrics")
    api = api_for(user)
    before = _scrape(live_server.url)
    assert before and all(name.startswith("oaiofs_") for name in before), sorted(before)[:5]
    for name in ("oaiofs_tus_uploads_active", "oaiofs_change_feed_waiters", "oaiofs_db_pool_in_use",
                 "oaiofs_blob_bytes", "oaiofs_http_requests_in_progress"):
        assert name in before, name
    oid = api.create_object({"_name": "M"})["oaio_id"]
    data = b"metered bytes" * 1000
    api.put_file(oid, "f.bin", data)
    assert api.get_file(oid, "f.bin") == data
    assert requests.get(live_server.url + "/api/v1/no/such/route", timeout=10).status_code == 404
    after = _scrape(live_server.url)
    route = '/api/v1/objects/{oaio_id}/files/{path:path}'
    got = {k: v for k, v in after.items() if k.startswith("oaiofs_http_requests_total") and "files" in k}
    key = f'oaiofs_http_requests_total{{method="GET",route="{route}",status="200"}}'
    assert after.get(key, 0) >= before.get(key, 0) + 1, got
    assert after['oaiofs_http_requests_total{method="GET",route="unmatched",status="404"}'] >= 1
    count = f'oaiofs_http_request_seconds_count{{method="GET",route="{route}"}}'
    assert after[count] > before.get(count, 0)
    assert after["oaiofs_blob_bytes"] >= before["oaiofs_blob_bytes"] + len(data)
    # a tus upload left open is counted while it exists
    from oaiofs.client.uploads import TusUploader

    url = TusUploader(api).create(oid, "open.bin", 100)
    assert _scrape(live_server.url)["oaiofs_tus_uploads_active"] >= 1
    TusUploader(api).cancel(url)
    # a waiting change-feed long-poll is counted while it waits
    import threading

    _events, cursor = api.changes(0)
    waiting = threading.Thread(target=lambda: api_for(user).changes(cursor, wait=20), daemon=True)
    waiting.start()
    wait_until(lambda: _scrape(live_server.url)["oaiofs_change_feed_waiters"] >= 1, timeout=30,
               message="a change-feed waiter counted")
    api.update_values(oid, {"wake": 1})                    # ends the long-poll
    waiting.join(timeout=30)


def test_metrics_with_two_worker_processes(tmp_path):
    from tests.conftest import ServerProcess

    # two workers start slowly on a loaded machine: a longer start-up wait than the fixtures'
    server = ServerProcess(tmp_path / "multi", extra_args=["--workers", "2"]).start(timeout=180)
    try:
        for _ in range(20):
            requests.get(server.url + "/healthz", timeout=10)
        total = 'oaiofs_http_requests_total{method="GET",route="/healthz",status="200"}'
        # every worker answers with the sum over both (multiprocess mode): never fewer than we made
        for _ in range(6):
            session = requests.Session()                 # a new connection each time: either worker
            values = {}
            for line in session.get(server.url + "/metrics", timeout=10).text.splitlines():
                if line and not line.startswith("#"):
                    name, _, value = line.rpartition(" ")
                    values[name] = float(value)
            session.close()
            assert values[total] >= 20
    finally:
        server.stop()


def test_healthz_names_the_failing_blob_store(server_factory, tmp_path):
    # a local blob folder made unusable (also in the PostgreSQL + S3 leg: the failure is made on disk)
    server = server_factory(env={"OAIOFS_DB_URL": f"sqlite:///{tmp_path / 'health.db'}"})
    ok = requests.get(server.url + "/healthz", timeout=30)
    assert ok.status_code == 200 and ok.json()["checks"] == {"database": {"ok": True}, "blobs": {"ok": True}}
    blobs = server.data_dir / "blobs"
    shutil.move(blobs, tmp_path / "blobs-away")
    blobs.write_text("not a folder")                   # root ignores chmod: a file where the folder was
    try:
        bad = requests.get(server.url + "/healthz", timeout=30)
        body = bad.json()
        assert bad.status_code == 503, body
        assert body["checks"]["database"]["ok"] is True and body["checks"]["blobs"]["ok"] is False
        assert body["error"] == "unavailable" and "blobs" in body["message"] and body["checks"]["blobs"]["error"]
    finally:
        blobs.unlink()
        shutil.move(tmp_path / "blobs-away", blobs)
    assert requests.get(server.url + "/healthz", timeout=30).status_code == 200


@pytest.mark.backend_neutral
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_name_no_outside_host_and_their_assets_load(live_server, page):
    html = requests.get(live_server.url + page, timeout=10)
    assert html.status_code == 200 and "<html" in html.text.lower()
    assert not OUTSIDE_HOST.search(html.text), OUTSIDE_HOST.findall(html.text)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
    assert any(a.endswith(".js") for a in assets), assets
    for asset in assets:
        assert asset.startswith("/"), asset
        got = requests.get(live_server.url + asset, timeout=30)
        assert got.status_code == 200 and len(got.content) > 1000, asset
    assert requests.get(live_server.url + "/openapi.json", timeout=10).json()["info"]["title"] == "oaiofs"


@pytest.mark.backend_neutral
def test_access_log_and_json_log_format(server_factory):
    server = server_factory(extra_args=["--access-log", "--log-format", "json"])
    requests.get(server.url + "/healthz?probe=1", timeout=10)
    wait_until(lambda: "/healthz?probe=1" in server.log_path.read_text(), timeout=20, message="access log line")
    lines = [line for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    docs = [json.loads(line) for line in lines]
    hit = [d for d in docs if "/healthz?probe=1" in d["message"]]
    assert hit and hit[0]["logger"] == "uvicorn.access" and '" 200' in hit[0]["message"]
    assert {"time", "level", "logger", "message"} <= set(hit[0])
    assert PASSWORD not in server.log_path.read_text()


@pytest.mark.backend_neutral
def test_no_access_log_by_default(live_server):
    requests.get(live_server.url + "/healthz?quiet=1", timeout=10)
    assert "quiet=1" not in live_server.log_path.read_text()
