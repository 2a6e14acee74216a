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


def wait_committed(api: ApiClient, oaio_id: str, path: str, sha256: str, timeout: float, interval: float) -> float:
    """Poll the object until ``path`` shows ``sha256``; return the ``perf_counter`` time it was seen."""
    deadline = time.monotonic() + timeout
    while True:
        doc = api.get_object(oaio_id)
        if any(f["path"] == path and f.get("sha256") == sha256 for f in doc.get("files", [])):
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise BenchError(f"{path} did not reach the server within {timeout:.0f} s")
        time.sleep(interval)


def write_into(path: Path, payload: Payload, block_size: int) -> None:
    """Write ``payload`` to ``path`` in ``block_size`` writes and close it."""
    with open(path, "wb", buffering=0) as f:
        for chunk in payload.chunks():
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
