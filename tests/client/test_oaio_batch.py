"""OaioClient against the real server: a folder of many small files goes up in batch commits
(requests counted at the server's /metrics), big files still by tus, and everything round-trips."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import requests

from oaiofs import protocol
from tests.client.test_oaio_client import connect, tree_hashes
from tests.conftest import ServerProcess

BATCH_ROUTE = protocol.PATH_BATCH
FILE_ROUTE = protocol.PATH_FILE.replace("{path}", "{path:path}")


def _requests(server: ServerProcess) -> dict[tuple[str, str], float]:
    """``{(method, route): count}`` from the server's Prometheus counters."""
    text = requests.get(server.url + "/metrics", timeout=30).text
    counts: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("oaiofs_http_requests_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            key = (labels.get("method", ""), labels.get("route", ""))
            counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def _delta(before: dict, after: dict, method: str, route: str) -> int:
    return int(after.get((method, route), 0) - before.get((method, route), 0))


def _uploads(before: dict, after: dict) -> int:
    return sum(int(after[k] - before.get(k, 0)) for k in after if k[1].startswith(protocol.PATH_UPLOADS))


def test_register_folder_of_300_small_files_uses_batches_and_round_trips(live_server, make_user, tmp_path: Path):
    user = make_user("batchy")
    folder = tmp_path / "tree"
    for i in range(300):
        path = folder / f"pkg{i % 10}" / f"mod{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"# module {i}\n".encode() + os.urandom(i * 7))
    (folder / "big.bin").write_bytes(os.urandom((1 << 20) + 4096))       # over the small-file bound: tus
    d1 = connect(live_server, user, tmp_path / "d1", "d1")
    d2 = connect(live_server, user, tmp_path / "d2", "d2")
    try:
        before = _requests(live_server)
        obj = d1.register_folder(str(folder))
        after = _requests(live_server)
        assert obj is not None and d1.error_message == "", d1.error_message
        batches = _delta(before, after, "POST", BATCH_ROUTE)
        assert 1 <= batches <= 2, after                                 # 300 files of ~1 KiB: one batch
        assert _delta(before, after, "PUT", FILE_ROUTE) == 0
        assert 1 <= _uploads(before, after) <= 4                          # big.bin by tus (create + patch)
        assert d2.synchronize_with_server_if_online(), d2.error_message
        assert tree_hashes(d2.files_root(obj.oaio_id)) == tree_hashes(folder)

        # edits: two files changed here, one of them also changed on the other device first
        (d2.files_root(obj.oaio_id) / "pkg1" / "mod1.py").write_bytes(b"edited on d2")
        assert d2.update_folder(obj.oaio_id) is not None, d2.error_message
        (folder / "pkg1" / "mod1.py").write_bytes(b"edited on d1")
        (folder / "pkg2" / "mod2.py").write_bytes(b"only d1 edits this")
        before = _requests(live_server)
        assert d1.update_folder(obj.oaio_id) is not None
        after = _requests(live_server)
        assert _delta(before, after, "POST", BATCH_ROUTE) == 1 and _delta(before, after, "PUT", FILE_ROUTE) == 0
        assert "conflict" in d1.error_message or d1.error_message == ""
        server_files = {f["path"]: f for f in d1.api.get_object(obj.oaio_id)["files"]}
        copies = [p for p in server_files if p.startswith("pkg1/mod1 (conflict")]
        assert len(copies) == 1, sorted(server_files)[:10]
        assert d1.api.get_file(obj.oaio_id, copies[0]) == b"edited on d1"
        assert d1.api.get_file(obj.oaio_id, "pkg1/mod1.py") == b"edited on d2"
        assert d1.api.get_file(obj.oaio_id, "pkg2/mod2.py") == b"only d1 edits this"
        assert server_files["pkg2/mod2.py"]["sha256"] == hashlib.sha256(b"only d1 edits this").hexdigest()

        # a third device with an empty cache reads back every file
        d3 = connect(live_server, user, tmp_path / "d3", "d3")
        try:
            assert d3.synchronize_with_server_if_online(), d3.error_message
            got = tree_hashes(d3.files_root(obj.oaio_id))
            want = {p: hashlib.sha256(d1.api.get_file(obj.oaio_id, p)).hexdigest()
                    for p, f in server_files.items() if f["kind"] == "file"}
            assert got == want
        finally:
            d3.close()
    finally:
        d1.close()
        d2.close()
