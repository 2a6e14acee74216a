"""Fixtures for the durability tests: a user on a real server and journals bound to it."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from oaiofs import protocol
from oaiofs.client.api import ApiClient
from oaiofs.vfs.journal import Journal
from tests.conftest import PASSWORD, ServerProcess
from tests.durability.helpers import Recorder

SMALL_CHUNK = 4 * protocol.CHUNK_UNIT     # the default 5 MiB chunk


class Harness:
    """One user on one real server, plus journals (closed at teardown)."""

    def __init__(self, server: ServerProcess, tmp: Path, user: str | None = None) -> None:
        self.server = server
        self.tmp = tmp
        self.user = user or server.add_user(f"dur-{uuid.uuid4().hex[:8]}")
        self.api = self.make_api()
        self._journals: list[Journal] = []

    def make_api(self, user: str | None = None) -> ApiClient:
        return ApiClient(self.server.url, user or self.user, PASSWORD, timeout=(2, 30))

    def make_uploader(self, api: ApiClient) -> Any:
        from oaiofs.client.uploads import TusUploader
        return TusUploader(api, chunk_size=SMALL_CHUNK)

    def journal(self, name: str = "journal", *, user: str | None = None, origin: str = "alice@laptop",
                recorder: Recorder | None = None, **kwargs: Any) -> Journal:
        api = self.make_api(user)
        kwargs.setdefault("backoff_initial_s", 0.2)
        kwargs.setdefault("backoff_cap_s", 1.0)
        journal = Journal(self.tmp / name, api, self.make_uploader(api), origin=origin,
                          **(recorder or Recorder()).kwargs(), **kwargs)
        self._journals.append(journal)
        return journal

    def new_object(self, values: dict[str, Any] | None = None) -> str:
        oaio_id = protocol.make_oaio_id("dur", self.user, "laptop", values or {}, protocol.now_stamp())
        self.api.create_object(values or {}, oaio_id)
        return oaio_id

    def file_doc(self, oaio_id: str, path: str, api: ApiClient | None = None) -> dict[str, Any] | None:
        doc = (api or self.api).get_object(oaio_id)
        return next((f for f in doc["files"] if f["path"] == path), None)

    def close(self) -> None:
        for journal in self._journals:
            try:
                journal.close()
            except Exception:  # noqa: BLE001 - teardown of a journal a test already closed
                pass


@pytest.fixture
def harness(live_server: ServerProcess, tmp_path: Path) -> Iterator[Harness]:
    """A fresh user on the shared server."""
    h = Harness(live_server, tmp_path)
    yield h
    h.close()


@pytest.fixture
def own_harness(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> Iterator[Harness]:
    """A fresh user on a server of this test's own (it may be stopped and restarted)."""
    h = Harness(server_factory(), tmp_path)
    yield h
    h.close()


# the drive engineer's real-mount fixture (tests/drive/conftest.py), reused by the end-to-end tests
from tests.drive.conftest import mounted_drive  # noqa: E402,F401  (pytest fixture)
