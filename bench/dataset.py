"""The benchmark's data, put on the server once per run through the plain HTTP API."""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from oaiofs.client.api import ApiClient
from oaiofs.errors import OaioError

from .config import BenchConfig
from .payload import Payload

log = logging.getLogger(__name__)
T = TypeVar("T")

BIG_OBJECT, BIG_FILE = "big", "big.bin"
STREAM_OBJECT, STREAM_FILE = "stream", "stream.bin"
WRITES_OBJECT = "writes"
SMALL_FILE = "data.txt"
IN_MEMORY_LIMIT = 64 << 20          # bigger payloads are streamed to the server


@dataclass
class StoredFile:
    """A file on the server and the drive-relative path that shows it (``<_name>/<path>``)."""

    oaio_id: str
    object_name: str
    path: str
    payload: Payload

    @property
    def drive_path(self) -> str:
        return f"{self.object_name}/{self.path}"


@dataclass
class Dataset:
    """What the workloads read and where they write."""

    big: StoredFile
    stream: StoredFile
    writes_oaio_id: str
    small: list[StoredFile] = field(default_factory=list)
    seconds: float = 0.0
    server_errors_retried: int = 0


class SetupCalls:
    """Runs idempotent setup calls, retrying an HTTP 500 a few times (counted and logged, never hidden)."""

    retries_per_call = 3

    def __init__(self) -> None:
        self.retried = 0

    def run(self, call: Callable[[], T]) -> T:
        for attempt in range(self.retries_per_call + 1):
            try:
                return call()
            except OaioError as exc:
                if exc.http_status != 500 or attempt == self.retries_per_call:
                    raise
                self.retried += 1
                log.warning("server error during setup (%r); retrying", exc)
        raise AssertionError("unreachable")

    def create_with_file(self, api: ApiClient, name: str, path: str, payload: Payload) -> StoredFile:
        """A new object named ``name`` holding ``payload`` at ``path``."""
        doc = self.run(lambda: api.create_object({"_name": name}))
        self.run(lambda: api.put_file(doc["oaio_id"], path, payload.to_bytes() if payload.size <= IN_MEMORY_LIMIT
                                      else payload.reader()))
        return StoredFile(doc["oaio_id"], name, path, payload)


def small_object_name(index: int) -> str:
    return f"obj-{index:04d}"


def populate(files_api: ApiClient, many_api: ApiClient, config: BenchConfig) -> Dataset:
    """Create the big-file objects for one user and ``config.small_count`` small objects for another.

    The many-objects user owns nothing else, so the root of its drive holds exactly
    ``small_count`` folders and its listing call returns exactly those objects.
    """
    start = time.monotonic()
    calls = SetupCalls()
    big = calls.create_with_file(files_api, BIG_OBJECT, BIG_FILE, Payload(config.big_size, "big"))
    stream = calls.create_with_file(files_api, STREAM_OBJECT, STREAM_FILE,
                                    Payload(config.stream_size, "stream-out"))
    writes = calls.run(lambda: files_api.create_object({"_name": WRITES_OBJECT}))
    log.info("big files uploaded in %.1f s", time.monotonic() - start)

    def make_small(index: int) -> StoredFile:
        return calls.create_with_file(many_api, small_object_name(index), SMALL_FILE,
                                      Payload(config.small_size, f"small-{index}"))

    with ThreadPoolExecutor(max_workers=config.populate_workers) as pool:
        small = list(pool.map(make_small, range(config.small_count)))
    seconds = time.monotonic() - start
    log.info("%d small objects created; data ready in %.1f s", len(small), seconds)
    return Dataset(big=big, stream=stream, writes_oaio_id=writes["oaio_id"], small=small, seconds=seconds,
                   server_errors_retried=calls.retried)
