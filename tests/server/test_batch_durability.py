"""Server: a batch commit's blobs are durable before the transaction that names them commits, and a
failure after (or while) they are stored leaves nothing of the batch visible (in-process: the
failures are injected into the real app and the real local blob store)."""
from __future__ import annotations

import base64
import hashlib
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from oaiofs import protocol
from oaiofs.client.api import batch_body
from oaiofs.errors import InsufficientStorage
from oaiofs.server import batch_commit, security
from oaiofs.server import db as dbmod
from oaiofs.server.app import create_app
from oaiofs.server.blobs import blob_key
from oaiofs.server.models import User
from oaiofs.server.settings import ServerSettings

PASSWORD = "batch-" + "durable-pw"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"writer:{PASSWORD}".encode()).decode()}
OBJ = "obj-durable"


class RecordingStore:
    """The local store; records each blob made final and can fail the n-th ``staging_commit``."""

    def __init__(self, inner: Any, events: list[tuple[str, str]]) -> None:
        self.inner, self.events, self.fail_at, self.commits = inner, events, 0, 0
        self.lock = threading.Lock()

    def staging_commit(self, upload_id: str, key: str, state: dict[str, Any]) -> None:
        with self.lock:
            self.commits += 1
            fail = self.commits == self.fail_at
        if fail:
            raise InsufficientStorage("injected: the store is full")
        self.inner.staging_commit(upload_id, key, state)
        with self.lock:
            self.events.append(("blob", key))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def app(tmp_path):
    settings = ServerSettings(data_dir=tmp_path / "data", db_url=f"sqlite:///{tmp_path / 'app.db'}")
    dbmod.run_migrations(settings.database_url)
    application = create_app(settings)
    state = application.state.oaiofs
    application.state.events = []
    state.blobs = RecordingStore(state.blobs, application.state.events)
    event.listen(state.engine, "commit", lambda _conn: application.state.events.append(("commit", "")))
    with state.sessionmaker.begin() as db:
        db.add(User(username="writer", password_hash=security.hash_password(PASSWORD)))
    return application


def _files(n: int, tag: str) -> list[protocol.BatchFile]:
    out = []
    for i in range(n):
        data = f"{tag} file {i}\n".encode() * (i + 1)
        out.append(protocol.BatchFile(f"{tag}/d{i % 3}/f{i}.txt", data, hashlib.sha256(data).hexdigest()))
    return out


def _post(http: TestClient, files: list[protocol.BatchFile]) -> Any:
    return http.post(protocol.PATH_BATCH.format(oaio_id=OBJ), content=batch_body(files),
                     headers={**AUTH, "Content-Type": protocol.BATCH_CONTENT_TYPE})


def _start(http: TestClient) -> dict[str, Any]:
    assert http.post(protocol.PATH_OBJECTS, json={"oaio_id": OBJ, "values": {}}, headers=AUTH).status_code == 201
    assert http.put(protocol.PATH_FILE.format(oaio_id=OBJ, path="keep.txt"), content=b"keep",
                    headers=AUTH).status_code == 200
    return _object(http)


def _object(http: TestClient) -> dict[str, Any]:
    resp = http.get(protocol.PATH_OBJECT.format(oaio_id=OBJ), headers=AUTH)
    assert resp.status_code == 200
    return resp.json()


def test_every_blob_is_final_before_the_batch_commits(app):
    events = app.state.events
    with TestClient(app) as http:
        _start(http)
        files = _files(40, "a") + [protocol.BatchFile("a/same.txt", b"a file 0\n", hashlib.sha256(b"a file 0\n").hexdigest())]
        del events[:]
        resp = _post(http, files)
        assert resp.status_code == 200 and {r["status"] for r in resp.json()["results"]} == {"ok"}
    blobs = [key for kind, key in events if kind == "blob"]
    assert sorted(blobs) == sorted({blob_key(f.sha256) for f in files})     # each distinct blob stored once
    first = next(i for i, (kind, _k) in enumerate(events) if kind == "blob")
    # all blobs final, then the one commit of the batch's transaction (authentication commits came before)
    assert [kind for kind, _k in events[first:]] == ["blob"] * len(blobs) + ["commit"]
    store = app.state.oaiofs.blobs
    assert all(store.exists(blob_key(f.sha256)) for f in files) and store.staging_ids() == []


def test_a_failure_after_the_blobs_are_stored_applies_nothing(app, monkeypatch):
    with TestClient(app, raise_server_exceptions=False) as http:
        before = _start(http)
        files = _files(30, "b")

        def crash(db: Any, obj: Any) -> None:        # the rows of the batch were about to be flushed
            raise RuntimeError("injected crash before the batch's rows are written")

        monkeypatch.setattr(batch_commit, "finish", crash)
        resp = _post(http, files)
        assert resp.status_code == 500 and set(resp.json()) == {"error", "message", "detail"}
        assert _object(http) == before                                      # no half batch, no version bump
        store = app.state.oaiofs.blobs
        assert all(store.exists(blob_key(f.sha256)) for f in files)      # stored and durable, unreferenced
        assert store.staging_ids() == []
        monkeypatch.undo()
        resp = _post(http, files)                                           # the same batch again: deduped
        assert resp.status_code == 200 and {r["status"] for r in resp.json()["results"]} == {"ok"}
        assert _object(http)["version"] == before["version"] + len(files)
        for f in files:
            got = http.get(protocol.PATH_FILE.format(oaio_id=OBJ, path=f.path), headers=AUTH)
            assert got.content == f.data


def test_a_store_failure_while_storing_the_blobs_applies_nothing(app):
    with TestClient(app, raise_server_exceptions=False) as http:
        before = _start(http)
        files = _files(25, "c")
        app.state.oaiofs.blobs.fail_at = app.state.oaiofs.blobs.commits + 7
        resp = _post(http, files)
        assert resp.status_code == 507 and resp.json()["error"] == "insufficient_storage"
        assert _object(http) == before
        assert app.state.oaiofs.blobs.staging_ids() == []
        resp = _post(http, files)
        assert resp.status_code == 200 and {r["status"] for r in resp.json()["results"]} == {"ok"}
        assert {f["path"] for f in _object(http)["files"] if f["kind"] == "file"} == {"keep.txt", *(f.path for f in files)}
