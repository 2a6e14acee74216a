"""Two ``oaiofs serve`` processes on ONE PostgreSQL database and ONE S3 bucket (SeaweedFS).

What one process starts, the other continues: tus uploads, carts, the change feed's
long-poll; and concurrent changes through both never lose an update.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from oaiofs import protocol
from oaiofs.client.api import ApiClient
from oaiofs.client.carts import CartDownloader, cart_entry
from oaiofs.client.uploads import TusUploader
from oaiofs.errors import VersionConflict
from tests.conftest import PASSWORD, ServerProcess, free_port, wait_until
from tests.scale.scale_fixtures import (MiB, list_keys, open_multipart_uploads,  # noqa: F401
                                        pg_database, s3_client, s3_prefix, services, shared_backend,
                                        two_servers)

pytestmark = pytest.mark.scale


def new_id() -> str:
    return f"scale-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def clients(two_servers: tuple[ServerProcess, ServerProcess]) -> Iterator[tuple[ApiClient, ApiClient]]:
    """One user, one client per server process (closed afterwards, so servers stop promptly)."""
    a, b = two_servers
    user = a.add_user(f"u-{uuid.uuid4().hex[:8]}")
    pair = ApiClient(a.url, user, PASSWORD), ApiClient(b.url, user, PASSWORD)
    yield pair
    for api in pair:
        api.close()


def run_together(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` in threads released at the same moment; returns results or exceptions."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_upload_started_on_one_process_is_finished_on_the_other(two_servers, clients, services, s3_prefix,
                                                                  tmp_path: Path) -> None:
    a, b = two_servers
    api_a, api_b = clients
    oaio_id = new_id()
    api_a.create_object({"kind": "scale"}, oaio_id)
    data = os.urandom(22 * MiB + 12345)
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()

    uploader_a = TusUploader(api_a, chunk_size=protocol.CHUNK_UNIT * 2)
    url = uploader_a.create(oaio_id, "dir/big.bin", len(data), sha256=digest)
    offset = 0
    while offset < 12 * MiB:                       # A receives the first ~12 MiB
        offset, result = uploader_a.send_chunk(url, offset, data[offset:offset + uploader_a.chunk_size])
        assert result is None
    # the bytes are in an S3 multipart upload, not on any server's disk
    client, bucket = s3_client(services), services["OAIOFS_TEST_S3_BUCKET"]
    assert open_multipart_uploads(client, bucket, s3_prefix + "/staging/")

    uploader_b = TusUploader(api_b, chunk_size=protocol.CHUNK_UNIT * 3)
    assert uploader_b.offset(url) == offset        # B knows how far A got
    result = uploader_b.upload_file(local, oaio_id, "dir/big.bin", url=url, sha256=digest)
    assert result["sha256"] == digest and result["size"] == len(data)
    assert uploader_b.bytes_sent <= len(data) - offset + uploader_b.chunk_size   # only the rest was sent

    assert api_a.get_file(oaio_id, "dir/big.bin") == data
    assert api_b.get_file(oaio_id, "dir/big.bin", start=5 * MiB, end=5 * MiB + 999) == data[5 * MiB:5 * MiB + 999]
    blob = f"{s3_prefix}/sha256/{digest[:2]}/{digest[2:4]}/{digest}"
    assert list_keys(client, bucket, blob) == [blob]
    assert list_keys(client, bucket, s3_prefix + "/staging/") == []
    assert open_multipart_uploads(client, bucket, s3_prefix + "/") == []
    assert not any(p.is_file() and p.stat().st_size >= MiB
                   for server in (a, b) for p in server.data_dir.rglob("*"))   # nothing big on local disks


def test_cart_created_on_one_process_is_downloaded_from_the_other(clients, tmp_path: Path) -> None:
    api_a, api_b = clients
    oaio_id = new_id()
    api_a.create_object({}, oaio_id)
    files = {"small.txt": b"hello from process A\n", "sub/blob.bin": os.urandom(7 * MiB + 3)}
    for path, data in files.items():
        api_a.put_file(oaio_id, path, data)

    carts_a, carts_b = CartDownloader(api_a), CartDownloader(api_b)
    uid = carts_a.create([cart_entry(oaio_id, p, hashlib.sha256(d).hexdigest()) for p, d in files.items()])
    assert carts_b.wait(uid, timeout=60) == protocol.CART_READY
    written = carts_b.download(uid, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == sorted(files)
    for path, data in files.items():
        assert (tmp_path / "out" / path).read_bytes() == data
    with carts_b.open_member(uid, "sub/blob.bin", start=MiB, end=2 * MiB + 5) as resp:   # ranged, from B
        assert resp.content == files["sub/blob.bin"][MiB:2 * MiB + 5]
    carts_a.delete(uid)


def test_change_made_on_one_process_wakes_a_long_poll_on_the_other(clients) -> None:
    api_a, api_b = clients
    _events, cursor = api_b.changes(0)
    quiet, cursor = api_b.changes(cursor, wait=1)              # nothing happens: the poll waits, then ends
    assert quiet == []

    delivered: list[Any] = []
    poll = threading.Thread(target=lambda: delivered.append(api_b.changes(cursor, wait=protocol.MAX_CHANGES_WAIT_S)))
    poll.start()
    oaio_id = new_id()
    api_a.create_object({"made": "on A"}, oaio_id)
    poll.join(protocol.MAX_CHANGES_WAIT_S + 30)
    assert not poll.is_alive()
    events, _next = delivered[0]
    assert [e for e in events if oaio_id in str(e)], f"the long-poll on B missed the change on A: {events}"


def test_concurrent_updates_with_one_base_version_on_two_processes(clients) -> None:
    api_a, api_b = clients
    oaio_id = new_id()
    version = api_a.create_object({"n": 0}, oaio_id)["version"]
    for round_ in range(8):
        results = run_together(lambda: api_a.update_values(oaio_id, {"a": round_}, base_version=version),
                               lambda: api_b.update_values(oaio_id, {"b": round_}, base_version=version))
        wins = [r for r in results if isinstance(r, dict)]
        conflicts = [r for r in results if isinstance(r, VersionConflict)]
        assert len(wins) == 1 and len(conflicts) == 1, results         # one wins, the other gets 409
        assert conflicts[0].http_status == 409
        assert conflicts[0].detail.get("current_version") == version + 1
        doc = api_b.get_object(oaio_id)
        assert doc["version"] == version + 1 == wins[0]["version"]
        assert doc["values"] == wins[0]["values"]
        version = doc["version"]


def test_concurrent_merges_on_two_processes_lose_nothing(clients) -> None:
    """Read-modify-write of the values happens under a row lock, not a process-local lock."""
    api_a, api_b = clients
    oaio_id = new_id()
    start = api_a.create_object({}, oaio_id)["version"]
    calls = [(lambda api=api, i=i: api.update_values(oaio_id, {f"k{i}": i}))
             for i, api in enumerate([api_a, api_b] * 6)]
    results = run_together(*calls)
    assert all(isinstance(r, dict) for r in results), results
    doc = api_a.get_object(oaio_id)
    assert doc["values"] == {f"k{i}": i for i in range(12)}
    assert doc["version"] == start + 12
    assert sorted(r["version"] for r in results) == list(range(start + 1, start + 13))


def test_serve_with_several_workers_on_postgres_and_s3(server_factory, shared_backend, tmp_path: Path) -> None:
    server = server_factory(tmp_path / "workers", env=shared_backend, extra_args=["--workers", "2"])
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children")
    wait_until(lambda: len(children.read_text().split()) >= 2, message="two uvicorn worker processes")
    user = server.add_user(f"u-{uuid.uuid4().hex[:8]}")
    apis = [ApiClient(server.url, user, PASSWORD, pool_size=1) for _ in range(4)]
    oaio_id = new_id()
    apis[0].create_object({}, oaio_id)
    try:
        results = run_together(*[(lambda api=api, i=i: api.put_file(oaio_id, f"f{i}.txt", f"file {i}".encode()))
                                 for i, api in enumerate(apis)])
        assert all(isinstance(r, dict) for r in results), results
        doc = apis[3].get_object(oaio_id)
        assert sorted(f["path"] for f in doc["files"]) == [f"f{i}.txt" for i in range(4)]
        assert doc["version"] == 5
    finally:
        for api in apis:
            api.close()


def test_server_with_a_missing_bucket_refuses_to_start(shared_backend, tmp_path: Path) -> None:
    env = {**os.environ, **shared_backend, "OAIOFS_BLOBS_URL": "s3://no-such-oaiofs-bucket/x"}
    done = subprocess.run([sys.executable, "-m", "oaiofs", "serve", "--data", str(tmp_path / "nobucket"),
                           "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "S3 bucket 'no-such-oaiofs-bucket' is not usable" in done.stderr


def test_hundred_clients_over_two_processes_all_answered_without_5xx(two_servers) -> None:
    """Issue 13 item 1 on PostgreSQL + S3: no pool stall, no 5xx but a deliberate 503 + Retry-After."""
    from bench.load import PASSWORD as LOAD_PASSWORD, prepare_clients, run_load
    a, b = two_servers
    users = [a.add_user(f"load-{uuid.uuid4().hex[:8]}", LOAD_PASSWORD) for _ in range(4)]
    result = run_load(prepare_clients([a.url, b.url], users, 100), duration=4.0)
    assert result.unanswered == 0 and result.resets == 0, result.error_samples
    assert result.errors == 0, (result.statuses, result.error_samples)
    assert result.answered >= 100
