"""Load benchmark: N concurrent API clients doing a mixed workload for a fixed time.

    .venv/bin/python -m bench.load [--clients 10,50,100,200] [--duration 10] [--backend sqlite|pg-s3|both]

Each client is a thread with its own keep-alive HTTP session and its own object; it
loops ``PATCH`` values (40 %), ``GET`` the object (40 %) and ``GET /whoami`` (20 %)
until the time is up. ``sqlite`` runs one ``oaiofs serve`` on SQLite + local blobs;
``pg-s3`` runs two processes on one PostgreSQL database and S3 prefix (from
``scripts/services.sh``: its ``OAIOFS_TEST_*`` variables must be in the environment)
with the clients spread over both. Per N it prints req/s, p50, p99, errors (any
answer but 2xx and the deliberate 503 + ``Retry-After``, which is counted as
``busy``), resets (connection errors, timeouts) and the servers' RSS.

Targets (issue 13): zero errors and resets at every N, p99 < 2 s at 100 clients,
req/s at 200 >= 0.8 x req/s at 10. The exit status is 1 if a target is missed.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import requests
from requests.adapters import HTTPAdapter

from oaiofs import protocol

from .processes import free_port, stop_process, wait_for

PASSWORD = "load-" + "bench-pw"
REQUEST_TIMEOUT_S = 120.0
P99_TARGET_S = 2.0
NO_COLLAPSE_RATIO = 0.8


@dataclasses.dataclass
class LoadResult:
    """What one run of N clients saw."""

    clients: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]
    busy: int = 0                 # 503 with Retry-After (deliberate back-pressure)
    errors: int = 0               # any other non-2xx
    resets: int = 0               # connection errors and timeouts
    unanswered: int = 0
    error_samples: list[str] = dataclasses.field(default_factory=list)
    rss_mib: float = 0.0
    cpu_s: float = 0.0            # CPU time (user + system) the servers spent during the run

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU per answered request: the cost figure that a loaded machine does not distort much."""
        return 1000 * self.cpu_s / self.answered if self.answered else 0.0

    @property
    def answered(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclasses.dataclass
class Client:
    """A user's credentials and object on one server URL."""

    url: str
    token: str
    oaio_id: str


def _session(url: str, token: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0))
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def prepare_clients(urls: list[str], users: list[str], count: int) -> list[Client]:
    """``count`` clients over ``urls`` and ``users``, each with an object of its own."""
    tokens = {}
    for user in users:
        answer = requests.post(urls[0] + protocol.PATH_LOGIN, json={"username": user, "password": PASSWORD},
                               timeout=60)
        answer.raise_for_status()
        tokens[user] = answer.json()["token"]
    clients = []
    for i in range(count):
        user, url = users[i % len(users)], urls[i % len(urls)]
        answer = requests.post(url + protocol.PATH_OBJECTS, json={"values": {"n": 0}, "oaio_id": f"load-{uuid.uuid4().hex}"},
                               headers={"Authorization": f"Bearer {tokens[user]}"}, timeout=60)
        answer.raise_for_status()
        clients.append(Client(url, tokens[user], answer.json()["oaio_id"]))
    return clients


def run_load(clients: list[Client], duration: float, rss: Callable[[], float] | None = None,
             seed: int = 13, cpu: Callable[[], float] | None = None) -> LoadResult:
    """Run every client in its own thread for ``duration`` seconds; every request is waited for."""
    result = LoadResult(clients=len(clients), seconds=0.0, latencies=[], statuses={})
    lock = threading.Lock()
    start_gate = threading.Barrier(len(clients) + 1)
    deadline = [0.0]

    def worker(index: int, client: Client) -> None:
        rnd = random.Random(seed * 1000 + index)
        session = _session(client.url, client.token)
        obj_url = client.url + protocol.PATH_OBJECT.format(oaio_id=client.oaio_id)
        start_gate.wait()
        n = 0
        try:
            while time.monotonic() < deadline[0]:
                pick = rnd.random()
                n += 1
                began = time.monotonic()
                try:
                    if pick < 0.4:
                        answer = session.patch(obj_url, json={"values": {f"k{rnd.randrange(8)}": n}},
                                               timeout=REQUEST_TIMEOUT_S)
                    elif pick < 0.8:
                        answer = session.get(obj_url, timeout=REQUEST_TIMEOUT_S)
                    else:
                        answer = session.get(client.url + protocol.PATH_WHOAMI, timeout=REQUEST_TIMEOUT_S)
                except requests.RequestException as exc:
                    with lock:
                        result.resets += 1
                        if len(result.error_samples) < 5:
                            result.error_samples.append(repr(exc)[:300])
                    session.close()
                    session = _session(client.url, client.token)
                    continue
                took = time.monotonic() - began
                with lock:
                    result.latencies.append(took)
                    result.statuses[answer.status_code] = result.statuses.get(answer.status_code, 0) + 1
                    if answer.status_code == 503 and answer.headers.get("Retry-After") and _is_error_body(answer):
                        result.busy += 1
                    elif not 200 <= answer.status_code < 300:
                        result.errors += 1
                        if len(result.error_samples) < 5:
                            result.error_samples.append(f"{answer.status_code} {answer.text[:200]}")
                if answer.status_code == 503:
                    time.sleep(min(float(answer.headers.get("Retry-After") or 1), 5.0))
        finally:
            session.close()

    threads = [threading.Thread(target=worker, args=(i, c), daemon=True) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    deadline[0] = time.monotonic() + duration
    began = time.monotonic()
    cpu_before = cpu() if cpu is not None else 0.0
    start_gate.wait()
    peak = 0.0
    while any(t.is_alive() for t in threads):
        if rss is not None:
            peak = max(peak, rss())
        for thread in threads:
            thread.join(timeout=0.5)
    result.seconds = time.monotonic() - began
    result.cpu_s = cpu() - cpu_before if cpu is not None else 0.0
    result.unanswered = sum(t.is_alive() for t in threads)
    result.rss_mib = peak
    return result


def _is_error_body(answer: requests.Response) -> bool:
    try:
        body = answer.json()
    except ValueError:
        return False
    return isinstance(body, dict) and {"error", "message", "detail"} <= set(body)


# --- the servers ---

def _tree(pids: list[int]) -> list[int]:
    """``pids`` and all their descendants."""
    seen: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        try:
            todo.extend(int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
        except OSError:
            continue
    return seen


def tree_cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by ``pids`` and their children."""
    total = 0
    for pid in _tree(pids):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])      # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def tree_rss_mib(pids: list[int]) -> float:
    """Resident memory of ``pids`` and their children, MiB."""
    total, seen, todo = 0, set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            todo.extend(int(c) for c in children)
        except OSError:
            continue
    return total / 1024


class Servers:
    """``oaiofs serve`` processes for one backend, users included."""

    def __init__(self, backend: str, work: Path, processes: int, users: int) -> None:
        self.backend, self.work, self.count = backend, work, processes
        self.procs: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []
        self.env = dict(os.environ)
        self.users = [f"load{i}" for i in range(users)]
        self.extra: list[str] = []
        if backend == "pg-s3":
            self._postgres_s3()

    def _postgres_s3(self) -> None:
        missing = [v for v in ("OAIOFS_TEST_PG_URL", "OAIOFS_TEST_S3_ENDPOINT", "OAIOFS_TEST_S3_BUCKET")
                   if not os.environ.get(v)]
        if missing:
            raise SystemExit(f"pg-s3 needs the services: eval \"$(scripts/services.sh start)\" (missing {missing})")
        import psycopg
        from sqlalchemy.engine import make_url
        name = "load_" + uuid.uuid4().hex[:12]
        with psycopg.connect(os.environ["OAIOFS_TEST_PG_URL"], autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.dbname = name
        db_url = make_url(os.environ["OAIOFS_TEST_PG_URL"]).set(database=name).render_as_string(hide_password=False)
        self.extra = ["--db", db_url, "--blobs", f"s3://{os.environ['OAIOFS_TEST_S3_BUCKET']}/{name}",
                      "--s3-endpoint", os.environ["OAIOFS_TEST_S3_ENDPOINT"]]
        self.env.update({"AWS_ACCESS_KEY_ID": os.environ.get("OAIOFS_TEST_S3_ACCESS_KEY", ""),
                         "AWS_SECRET_ACCESS_KEY": os.environ.get("OAIOFS_TEST_S3_SECRET_KEY", ""),
                         "AWS_DEFAULT_REGION": "us-east-1"})

    def __enter__(self) -> "Servers":
        data = self.work / "data"
        for user in self.users:
            subprocess.run([sys.executable, "-m", "oaiofs", "user", "add", user, "--data", str(data),
                            *self.extra[:2]], check=True, env=dict(self.env, OAIOFS_PASSWORD=PASSWORD),
                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        for i in range(self.count):
            port = free_port()
            log = open(self.work / f"server{i}.log", "ab")
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "oaiofs", "serve", "--data", str(data), "--host", "127.0.0.1",
                 "--port", str(port), *self.extra], stdout=log, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True))
            log.close()
            url = f"http://127.0.0.1:{port}"
            self.urls.append(url)
            wait_for(lambda url=url: _answers(url), 60, f"server {url}")
        return self

    def rss(self) -> float:
        return tree_rss_mib([p.pid for p in self.procs])

    def cpu(self) -> float:
        return tree_cpu_s([p.pid for p in self.procs])

    def __exit__(self, *_exc: object) -> None:
        for proc in self.procs:
            stop_process(proc)
        if self.backend == "pg-s3":
            import psycopg
            with psycopg.connect(os.environ["OAIOFS_TEST_PG_URL"], autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')


def _answers(url: str) -> bool:
    try:
        return requests.get(url + protocol.PATH_STAMP, timeout=1).status_code == 200
    except requests.RequestException:
        return False


# --- report ---

def table(rows: list[tuple[str, LoadResult]]) -> str:
    """A markdown table of the runs."""
    lines = ["| backend | clients | req/s | p50 ms | p99 ms | errors | busy 503 | resets | unanswered | server RSS MiB "
             "| server CPU ms/req |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for backend, r in rows:
        lines.append(f"| {backend} | {r.clients} | {r.rate:.1f} | {r.percentile(0.5) * 1000:.0f} | "
                     f"{r.percentile(0.99) * 1000:.0f} | {r.errors} | {r.busy} | {r.resets} | {r.unanswered} | "
                     f"{r.rss_mib:.0f} | {r.cpu_ms_per_request:.1f} |")
    return "\n".join(lines)


def misses(backend: str, results: list[LoadResult]) -> list[str]:
    """The targets these runs missed (empty: all met)."""
    out = []
    for r in results:
        if r.errors or r.resets or r.unanswered:
            out.append(f"{backend} {r.clients} clients: {r.errors} errors, {r.resets} resets, "
                       f"{r.unanswered} unanswered ({'; '.join(r.error_samples[:2])})")
        if r.clients == 100 and r.percentile(0.99) >= P99_TARGET_S:
            out.append(f"{backend} 100 clients: p99 {r.percentile(0.99):.2f} s >= {P99_TARGET_S} s")
    by_n = {r.clients: r for r in results}
    if 10 in by_n and 200 in by_n and by_n[200].rate < NO_COLLAPSE_RATIO * by_n[10].rate:
        out.append(f"{backend}: {by_n[200].rate:.1f} req/s at 200 < {NO_COLLAPSE_RATIO} x {by_n[10].rate:.1f} at 10")
    return out


def run_backend(backend: str, counts: list[int], duration: float, work: Path) -> list[LoadResult]:
    processes = 2 if backend == "pg-s3" else 1
    with Servers(backend, work, processes, users=10) as servers:
        clients = prepare_clients(servers.urls, servers.users, max(counts))
        results = []
        for n in counts:
            result = run_load(clients[:n], duration, rss=servers.rss, cpu=servers.cpu)
            print(f"{backend}: {n} clients: {result.rate:.1f} req/s, p99 {result.percentile(0.99) * 1000:.0f} ms, "
                  f"{result.cpu_ms_per_request:.1f} server CPU ms/request, "
                  f"{result.errors} errors, {result.busy} busy, {result.resets} resets", file=sys.stderr, flush=True)
            results.append(result)
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="10,50,100,200", help="comma-separated client counts")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per client count")
    parser.add_argument("--backend", choices=("sqlite", "pg-s3", "both"), default="sqlite")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.clients.split(",") if n.strip()]
    backends = ["sqlite", "pg-s3"] if args.backend == "both" else [args.backend]
    rows, missed = [], []
    work = Path(tempfile.mkdtemp(prefix="oaiofs-load-"))
    try:
        for backend in backends:
            (work / backend).mkdir()
            results = run_backend(backend, counts, args.duration, work / backend)
            rows += [(backend, r) for r in results]
            missed += misses(backend, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    for line in missed:
        print("MISSED:", line)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
