"""Server-side small-file benchmark (issue 16): per-PUT cost vs object size, plain PUTs vs batch commit.

    .venv/bin/python -m bench.server_small_files [--files 10000] [--puts 50] [--batch 1000]

Starts its own ``oaiofs serve`` (SQLite, local blobs) on 127.0.0.1 in a temporary folder and prints:

* median/p90 latency of a plain ``PUT`` of a 4 KiB file into an empty object and into one holding
  ``--files`` entries (filled by rows written straight into the database, so any server version
  can be measured the same way), and their ratio (target: <= 2x);
* wall time of ``--batch`` plain PUTs of 4 KiB files (one keep-alive session) beside one batch
  commit of the same files (skipped if the server has no batch endpoint).

Not a test: nothing is asserted. ``--code DIR`` runs the server from another source tree (a
``git archive`` of an older commit) with this virtualenv, for a same-run baseline.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

PASSWORD = "bench-password-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _oaiofs(code: str | None, *args: str) -> list[str]:
    if code:
        return [sys.executable, "-c", f"import sys; sys.path.insert(0, {code!r}); from oaiofs.cli import main; "
                                      "sys.exit(main())", *args]
    return [sys.executable, "-m", "oaiofs", *args]


def _fill(db_path: Path, oaio_id: str, n: int) -> None:
    """``n`` files in 100 folders, written straight into the SQLite database."""
    con = sqlite3.connect(db_path, timeout=60)
    with con:
        object_id, stamp = con.execute("SELECT id, stamp FROM objects WHERE oaio_id = ?", (oaio_id,)).fetchone()
        rows = [(f"d{i}", "dir") for i in range(100)] + [(f"d{i % 100}/f{i}.txt", "file") for i in range(n)]
        con.executemany(
            "INSERT INTO files (object_id, path, path_hash, kind, size, sha256, blob_key, version, stamp, mtime,"
            " mode, mtime_ns, target) VALUES (?, ?, ?, ?, 1, ?, NULL, 1, ?, 1.0, ?, 1000000000, NULL)",
            [(object_id, p, hashlib.sha256(p.encode()).hexdigest(), kind, "0" * 64 if kind == "file" else None,
              stamp, 0o644 if kind == "file" else 0o755) for p, kind in rows])
    con.close()


def _puts(s: requests.Session, url: str, oaio_id: str, count: int, prefix: str) -> list[float]:
    times = []
    for i in range(count):
        data = os.urandom(4096)
        start = time.perf_counter()
        resp = s.put(f"{url}/api/v1/objects/{oaio_id}/files/{prefix}/p{i}.bin", data=data)
        times.append(time.perf_counter() - start)
        resp.raise_for_status()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--puts", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--code", default=None, help="source tree to run the server from (baseline)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="oaiofs-bench-small-") as tmp:
        data = Path(tmp) / "data"
        env = dict(os.environ, OAIOFS_PASSWORD=PASSWORD)
        subprocess.run(_oaiofs(args.code, "user", "add", "bench", "--data", str(data)), env=env, check=True,
                       stdout=subprocess.DEVNULL)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(Path(tmp) / "server.log", "wb")
        proc = subprocess.Popen(_oaiofs(args.code, "serve", "--data", str(data), "--host", "127.0.0.1",
                                        "--port", str(port)), stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if requests.get(url + "/api/v1/stamp", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("server did not start")
                time.sleep(0.2)
            s = requests.Session()
            s.auth = ("bench", PASSWORD)
            for oid in ("empty", "big", "plain", "batched"):
                s.post(url + "/api/v1/objects", json={"oaio_id": oid, "values": {}}).raise_for_status()
            _fill(data / "oaiofs.db", "big", args.files)
            _puts(s, url, "empty", 5, "warm")
            _puts(s, url, "big", 5, "warm")
            empty: list[float] = []
            big: list[float] = []
            for i in range(args.puts):                 # interleaved: load drift hits both alike
                empty += _puts(s, url, "empty", 1, f"m{i}")
                big += _puts(s, url, "big", 1, f"m{i}")
            result: dict[str, object] = {
                "put_empty_median_ms": round(statistics.median(empty) * 1000, 2),
                "put_empty_p90_ms": round(sorted(empty)[int(len(empty) * 0.9)] * 1000, 2),
                f"put_{args.files}_median_ms": round(statistics.median(big) * 1000, 2),
                f"put_{args.files}_p90_ms": round(sorted(big)[int(len(big) * 0.9)] * 1000, 2),
                "ratio_median": round(statistics.median(big) / statistics.median(empty), 2),
            }
            start = time.perf_counter()
            _puts(s, url, "plain", args.batch, "t")
            result[f"plain_puts_{args.batch}_s"] = round(time.perf_counter() - start, 2)
            if s.post(f"{url}/api/v1/objects/batched/batch", data=b"").status_code != 404:
                sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
                from oaiofs import protocol
                from oaiofs.client.api import ApiClient
                api = ApiClient(url, "bench", PASSWORD)
                files = [protocol.BatchFile(f"t/p{i}.bin", d, hashlib.sha256(d).hexdigest())
                         for i, d in ((i, os.urandom(4096)) for i in range(args.batch))]
                start = time.perf_counter()
                results = [r for chunk in protocol.plan_batches(files) for r in api.commit_batch("batched", chunk)]
                result[f"batch_{args.batch}_s"] = round(time.perf_counter() - start, 2)
                assert all(r["status"] == "ok" for r in results)
                result["batch_speedup"] = round(result[f"plain_puts_{args.batch}_s"] / result[f"batch_{args.batch}_s"], 1)
            print(json.dumps(result, indent=1))
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
