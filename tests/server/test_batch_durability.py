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
    """The local store; records each blob a batch made final and can fail the n-th of them."""

    def __init__(self, inner: Any, events: list[tuple[str, str]]) -> None:
        self.inner, self.events, self.fail_at, self.commits = inner, events, 0, 0
        self.lock = threading.Lock()

    def put_small(self, key: str, data: bytes) -> None:
        with self.lock:
            self.commits += 1
            fail = self.commits == self.fail_at
        if fail:
            raise InsufficientStorage("injected: the store is full")
        self.inner.put_small(key, data)
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


def test_local_put_small_is_final_deduped_and_leaves_nothing_on_a_full_disk(tmp_path, monkeypatch):
    from oaiofs.server.blobs import local
    store = local.LocalBlobStore(tmp_path / "blobs")
    data = b"small file\n" * 100
    key = blob_key(hashlib.sha256(data).hexdigest())
    fsynced: list[int] = []
    real_fsync = local.os.fsync
    monkeypatch.setattr(local.os, "fsync", lambda fd: (fsynced.append(fd), real_fsync(fd))[1])
    store.put_small(key, data)
    assert b"".join(store.open_range(key)) == data and len(fsynced) == 1
    store.put_small(key, data)                                      # stored already: nothing written
    assert len(fsynced) == 1 and store.staging_ids() == []

    real_replace = local.os.replace
    taken: list[str] = []

    def purge_then_replace(src, dst):                               # the purge took the staging file once
        if not taken:
            taken.append(str(src))
            local.os.unlink(src)
        return real_replace(src, dst)

    monkeypatch.setattr(local.os, "replace", purge_then_replace)
    other = b"another"
    store.put_small(blob_key(hashlib.sha256(other).hexdigest()), other)
    assert taken and b"".join(store.open_range(blob_key(hashlib.sha256(other).hexdigest()))) == other

    import errno

    def full(fd, view):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local.os, "write", full)
    third = b"does not fit"
    with pytest.raises(InsufficientStorage):
        store.put_small(blob_key(hashlib.sha256(third).hexdigest()), third)
    assert not store.exists(blob_key(hashlib.sha256(third).hexdigest())) and store.staging_ids() == []
