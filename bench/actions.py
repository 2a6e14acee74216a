"""What the workloads do: stream over HTTP, write into the drive, wait for the server, list folders."""
from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

from oaiofs import protocol
from oaiofs.client.api import ApiClient, quote_id, quote_path

from .dataset import StoredFile
from .measure import BenchError, Stopwatch
from .payload import Payload

LS_ENV = dict(os.environ, LC_ALL="C")


def size_text(size: int) -> str:
    """``268435456`` -> ``256 MiB``."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"


def file_url_path(stored: StoredFile) -> str:
    """The plain-HTTP path of a stored file."""
    return protocol.PATH_FILE.format(oaio_id=quote_id(stored.oaio_id), path=quote_path(stored.path))


def http_get_to_null(api: ApiClient, stored: StoredFile, block_size: int) -> int:
    """Stream one file over the client's keep-alive session, discarding it; return the byte count."""
    total = 0
    with api.request("GET", file_url_path(stored), stream=True) as resp:
        for chunk in resp.iter_content(block_size):
            total += len(chunk)
    return total


def sha256_of(path: Path, block_size: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block_size):
            digest.update(chunk)
    return digest.hexdigest()


def feed_cursor(api: ApiClient) -> int:
    """The change feed's current end for ``api``'s user (events before it are old news)."""
    cursor = 0
    while True:
        events, cursor = api.changes(cursor, wait=0)
        if not events:
            return cursor


def wait_committed(api: ApiClient, oaio_id: str, path: str, sha256: str, cursor: int, timeout: float) -> float:
    """Follow the change feed from ``cursor`` until ``path`` of ``oaio_id`` shows ``sha256`` on the server;
    return the ``perf_counter`` time it was seen.

    The feed long-polls (the server answers the moment the commit's event exists), so waiting
    costs the server one idle request instead of a stream of polls competing with the upload.
    """
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BenchError(f"{path} did not reach the server within {timeout:.0f} s")
        events, cursor = api.changes(cursor, wait=min(remaining, protocol.MAX_CHANGES_WAIT_S))
        if any(e.get("subject") == oaio_id and path in e.get("data", {}).get("changed_files", ()) for e in events):
            seen = time.perf_counter()
            doc = api.get_object(oaio_id)
            if any(f["path"] == path and f.get("sha256") == sha256 for f in doc.get("files", [])):
                return seen


def write_into(path: Path, data: bytes | Payload, block_size: int) -> None:
    """Write ``data`` (bytes, or a payload generated on the fly) to ``path`` in ``block_size`` writes and close it."""
    chunks = [data] if isinstance(data, bytes) else data.chunks()
    with open(path, "wb", buffering=0) as f:
        for chunk in chunks:
            view = memoryview(chunk)
            for start in range(0, len(view), block_size):
                f.write(view[start:start + block_size])


def ls_l(folder: Path) -> tuple[float, int]:
    """Time one ``ls -l`` of ``folder``; return (seconds, entries listed)."""
    with Stopwatch() as t:
        result = subprocess.run(["ls", "-l", str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=LS_ENV)
    if result.returncode != 0:
        raise BenchError(f"ls -l {folder} failed: {result.stderr.decode(errors='replace')[:300]}")
    return t.seconds, len(result.stdout.splitlines()) - 1     # minus the "total" line
