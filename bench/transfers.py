"""Transfer benchmark: TusUploader and CartDownloader against plain HTTP PUT/GET of the same bytes.

Starts one ``oaiofs serve`` on 127.0.0.1, then for each repetition uploads a fresh
payload (distinct bytes, so the content-addressed store cannot dedupe) once with
``TusUploader`` and once with a plain ``PUT``, and downloads a stored file once with
``CartDownloader`` (create, long-poll, stream, verify, delete) and once with a plain
``GET``; both sides write to / read from local files. With ``--journal`` it also
writes a file in 1 MiB pieces (hashing as the drive does) and hands it to a
``Journal`` at "release", once streamed while written (``oaiofs.vfs.stream_upload``)
and once sent only after the release, timing write start → committed. Prints a
table with speed ratios and writes JSON. Not a test: nothing here asserts speed.

    python bench/transfers.py [--size-mib 256] [--reps 3] [--journal] [--json PATH]
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import os
import time
import logging
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import ContextManager

if __package__ in (None, ""):                  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import RssSampler, Stopwatch, mib_per_s  # noqa: E402
from bench.payload import Payload  # noqa: E402
from bench.processes import ServerHandle  # noqa: E402
from bench.report import Row, Target, markdown_table, write_json  # noqa: E402
from oaiofs import protocol  # noqa: E402
from oaiofs.client.api import ApiClient, quote_id, quote_path  # noqa: E402
from oaiofs.client.carts import CartDownloader, cart_entry  # noqa: E402
from oaiofs.client.uploads import TusUploader  # noqa: E402
from oaiofs.vfs.journal import Journal  # noqa: E402
from oaiofs.vfs.opstore import Op  # noqa: E402
from oaiofs.vfs.stream_upload import SequentialWrites  # noqa: E402

log = logging.getLogger("bench.transfers")

USER, PASSWORD = "bench", "bench-password"
OBJECT = "bench-transfers"
MIB = 1 << 20
PIECE = 1 << 20
TARGET = Target("min_ratio", 0.7, "≥ 0.7×")   # informative goal: within 30 % of plain HTTP


class _Unheard:
    """A journal listener that ignores the reports (the benchmark waits with ``Journal.wait``)."""

    def on_applied(self, op: Op, doc: object) -> None: ...
    def on_conflict(self, op: Op, conflict_copy: str) -> None: ...
    def on_failed(self, op: Op, err: Exception) -> None: ...

    def reports(self) -> ContextManager[None]:
        return contextlib.nullcontext()


def write_payload(path: Path, payload: Payload) -> None:
    with open(path, "wb") as out:
        for chunk in payload.chunks():
            out.write(chunk)


def plain_put(api: ApiClient, src: Path, name: str) -> None:
    with open(src, "rb") as body:
        api.request("PUT", protocol.PATH_FILE.format(oaio_id=quote_id(OBJECT), path=quote_path(name)),
                    data=body, headers={"Content-Type": "application/octet-stream",
                                        "Content-Length": str(src.stat().st_size)}).close()


def plain_get(api: ApiClient, name: str, dest: Path) -> None:
    path = protocol.PATH_FILE.format(oaio_id=quote_id(OBJECT), path=quote_path(name))
    with api.request("GET", path, stream=True) as resp, open(dest, "wb") as out:
        for piece in resp.iter_content(PIECE):
            out.write(piece)


def journal_write(journal: Journal, payload: Payload, path: Path, name: str,
                  stream: bool) -> tuple[float, float, int]:
    """Write ``payload`` to ``path`` like the drive (1 MiB writes, running sha256), submit it at "release"
    and wait until the server committed it; returns (seconds to release, seconds in all, bytes the
    server had at release)."""
    streams = SequentialWrites(journal) if stream else None
    hasher, offset, key = hashlib.sha256(), 0, (OBJECT, name)
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in payload.chunks():
            for at in range(0, len(chunk), PIECE):
                piece = chunk[at:at + PIECE]
                os.pwrite(fd, piece, offset)
                hasher.update(piece)
                if streams is not None:
                    streams.wrote(key, OBJECT, name, 0, path, offset, len(piece))
                offset += len(piece)
    finally:
        os.close(fd)
    op = journal.submit(Op("put_file", OBJECT, name, base_version=0, sha256=hasher.hexdigest(), size=offset,
                           mtime=time.time()), path, stream=streams.take(key) if streams else None)
    released, sent_at_release = time.perf_counter() - started, op.offset
    final = journal.wait(op, timeout=300)
    if final.state != "done":
        raise RuntimeError(f"journal op ended {final.state}: {final.error}")
    return released, time.perf_counter() - started, sent_at_release


def run(size: int, reps: int, work: Path, chunk_size: int | None = None,
        with_journal: bool = False) -> tuple[list[Row], dict[str, object]]:
    """Measure both directions ``reps`` times; returns the rows and extra facts."""
    server = ServerHandle(work / "server", work)
    server.start()
    try:
        server.add_user(USER, PASSWORD)
        api = ApiClient(server.url, USER, PASSWORD, timeout=(5, 300))
        api.create_object({"_name": "transfer benchmark"}, OBJECT)
        up = Row("upload", f"upload {size / MIB:g} MiB (TusUploader)", "plain PUT", "MiB/s", True, TARGET)
        down = Row("download", f"download {size / MIB:g} MiB (CartDownloader)", "plain GET", "MiB/s", True, TARGET)
        stream_row = Row("journal_stream", f"write {size / MIB:g} MiB + release, until committed (streamed while "
                         "written)", "the same, sent only after the release", "MiB/s", True, TARGET)
        journal = None
        if with_journal:
            journal = Journal(work / "journal", api, TusUploader(api), origin="bench@transfers",
                              listener=_Unheard())
            journal.start()
        src = work / "src.bin"
        peak_rss = 0.0
        for rep in range(reps):
            write_payload(src, Payload(size, f"tus-{rep}"))
            os.sync()                   # every timed phase starts with no dirty-page backlog
            with RssSampler(server.proc.pid) as rss, Stopwatch() as clock:
                uploader = TusUploader(api) if chunk_size is None else TusUploader(api, chunk_size=chunk_size)
                uploader.upload_file(src, OBJECT, f"tus-{rep}.bin")
            up.samples.append(mib_per_s(size, clock.seconds))
            peak_rss = max(peak_rss, rss.peak_tree_rss_mib)
            write_payload(src, Payload(size, f"put-{rep}"))
            os.sync()
            with Stopwatch() as clock:
                plain_put(api, src, f"put-{rep}.bin")
            up.baseline_samples.append(mib_per_s(size, clock.seconds))

            stored = api.get_object(OBJECT)
            sha = next(f["sha256"] for f in stored["files"] if f["path"] == f"tus-{rep}.bin")
            out = work / f"cart-{rep}"
            os.sync()                   # every timed phase starts with no dirty-page backlog
            with RssSampler(server.proc.pid) as rss, Stopwatch() as clock:
                CartDownloader(api).fetch([cart_entry(OBJECT, f"tus-{rep}.bin", sha)], out)
            down.samples.append(mib_per_s(size, clock.seconds))
            peak_rss = max(peak_rss, rss.peak_tree_rss_mib)
            shutil.rmtree(out)
            os.sync()
            with Stopwatch() as clock:
                plain_get(api, f"tus-{rep}.bin", work / "get.bin")
            down.baseline_samples.append(mib_per_s(size, clock.seconds))
            (work / "get.bin").unlink()
            log.info("rep %d: upload %.0f vs %.0f MiB/s, download %.0f vs %.0f MiB/s", rep, up.samples[-1],
                     up.baseline_samples[-1], down.samples[-1], down.baseline_samples[-1])
            if journal is not None:
                for streamed, samples in ((True, stream_row.samples), (False, stream_row.baseline_samples)):
                    label = "stream" if streamed else "after"
                    released, total, sent = journal_write(journal, Payload(size, f"j{label}-{rep}"),
                                                    work / f"j{label}-{rep}.bin", f"j{label}-{rep}.bin", streamed)
                    samples.append(mib_per_s(size, total))
                    stream_row.detail.setdefault(f"{label}_release_s", []).append(round(released, 3))
                    stream_row.detail.setdefault(f"{label}_total_s", []).append(round(total, 3))
                    stream_row.detail.setdefault(f"{label}_mib_sent_at_release", []).append(round(sent / MIB, 1))
                log.info("rep %d: journal write streamed %.0f vs after release %.0f MiB/s", rep,
                         stream_row.samples[-1], stream_row.baseline_samples[-1])
        if journal is not None:
            journal.close()
        api.close()
        rows = [up, down] + ([stream_row] if journal is not None else [])
        return rows, {"server_peak_rss_mib": round(peak_rss, 1)}
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=float, default=256.0, help="file size in MiB (default 256)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per row (median is reported)")
    parser.add_argument("--chunk-units", type=int, default=None,
                        help="TusUploader chunk size in units of 1280 KiB (default: the uploader's default)")
    parser.add_argument("--journal", action="store_true",
                        help="also time a write + release through the journal, streamed while written vs not")
    parser.add_argument("--json", type=Path, default=None, help="where to write the JSON results")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch folder for the client's files (default: a temporary one in /dev/shm "
                             "when it exists, so both sides measure the network path, not this disk)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    size = int(args.size_mib * MIB)
    scratch = "/dev/shm" if os.path.isdir("/dev/shm") else None
    work = Path(args.work or tempfile.mkdtemp(prefix="oaiofs-bench-transfers-", dir=scratch))
    work.mkdir(parents=True, exist_ok=True)
    try:
        chunk_size = args.chunk_units * protocol.CHUNK_UNIT if args.chunk_units else None
        rows, facts = run(size, args.reps, work, chunk_size, args.journal)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(markdown_table(rows))
    print(f"\nserver peak RSS while transferring: {facts['server_peak_rss_mib']} MiB")
    json_path = args.json or Path(__file__).resolve().parent / "results" / "transfers.json"
    write_json(json_path, rows, {"benchmark": "transfers", "size_bytes": size, "reps": args.reps,
                                 "chunk_size": chunk_size,
                                 "time": dt.datetime.now(dt.timezone.utc).isoformat(),
                                 "machine": platform.platform(), **facts})
    print(f"JSON written to {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
