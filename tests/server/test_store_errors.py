"""Blob-store failures on write (issue 13: S3 full bucket / quota / 5xx) and the one-hop routes' commit.

A fault-injecting store raises what :class:`~oaiofs.server.blobs.s3.S3BlobStore` raises for an S3
error (its ``s3_errors`` mapping of a botocore ``ClientError``): the answer is a JSON 507 (full,
over quota, too large) or 503 (any other store error), and a plain PUT leaves no upload row and
no staging behind. In-process (TestClient): a real S3 server cannot be made to fail on demand.
"""
from __future__ import annotations

import base64
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from oaiofs import protocol
from oaiofs.errors import InsufficientStorage, Unavailable
from oaiofs.server import db as dbmod, security
from oaiofs.server.app import create_app
from oaiofs.server.blobs.s3 import s3_errors
from oaiofs.server.deps import get_current_user, get_db
from oaiofs.server.models import Upload, User
from oaiofs.server.onehop import OneHopRoute
from oaiofs.server.settings import ServerSettings

PASSWORD = "store-" + "errors-pw"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"writer:{PASSWORD}".encode()).decode()}


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


@pytest.mark.parametrize("code,status,expected", [
    ("QuotaExceeded", 403, InsufficientStorage), ("EntityTooLarge", 400, InsufficientStorage),
    ("XMinioStorageFull", 507, InsufficientStorage), ("Whatever", 507, InsufficientStorage),
    ("InternalError", 500, Unavailable), ("SlowDown", 503, Unavailable), ("AccessDenied", 403, Unavailable)])
def test_s3_errors_map_to_507_or_503(code, status, expected):
    @s3_errors
    def write() -> None:
        raise client_error(code, status)

    with pytest.raises(expected) as info:
        write()
    assert info.value.detail == {"s3_error": code}


class FaultyStore:
    """The local store, but writes and commits fail like an S3 store that answers ``code``."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.fail_on, self.code, self.status = inner, "", "", 0

    def _maybe_fail(self, name: str) -> None:
        if name == self.fail_on:
            @s3_errors
            def s3_call() -> None:
                raise client_error(self.code, self.status)
            s3_call()

    def staging_write(self, *args: Any, **kwargs: Any) -> Any:
        result = self.inner.staging_write(*args, **kwargs)    # bytes may be half written, as on S3
        self._maybe_fail("staging_write")
        return result

    def staging_commit(self, *args: Any, **kwargs: Any) -> Any:
        self._maybe_fail("staging_commit")
        return self.inner.staging_commit(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def app(tmp_path):
    settings = ServerSettings(data_dir=tmp_path / "data", db_url=f"sqlite:///{tmp_path / 'app.db'}")
    dbmod.run_migrations(settings.database_url)
    application = create_app(settings)
    application.state.oaiofs.blobs = FaultyStore(application.state.oaiofs.blobs)
    with application.state.oaiofs.sessionmaker.begin() as db:
        db.add(User(username="writer", password_hash=security.hash_password(PASSWORD)))
    return application


def _leftovers(app) -> tuple[int, list[str]]:
    with app.state.oaiofs.sessionmaker() as db:
        uploads = db.scalar(select(func.count()).select_from(Upload))
    return uploads, app.state.oaiofs.blobs.staging_ids()


@pytest.mark.parametrize("fail_on", ["staging_write", "staging_commit"])
@pytest.mark.parametrize("code,status,answer", [("QuotaExceeded", 403, 507), ("EntityTooLarge", 400, 507),
                                                 ("InternalError", 500, 503)])
def test_a_store_error_on_put_answers_json_and_leaves_nothing(app, fail_on, code, status, answer):
    store = app.state.oaiofs.blobs
    with TestClient(app, raise_server_exceptions=False) as http:
        assert http.post(protocol.PATH_OBJECTS, json={"oaio_id": "obj-1", "values": {}}, headers=AUTH).status_code == 201
        url = protocol.PATH_FILE.format(oaio_id="obj-1", path="f.bin")
        assert http.put(url, content=b"old", headers=AUTH).status_code == 200
        store.fail_on, store.code, store.status = fail_on, code, status
        resp = http.put(url, content=b"x" * 300_000, headers=AUTH)
        assert resp.status_code == answer, resp.text
        assert set(resp.json()) == {"error", "message", "detail"}
        assert resp.json()["error"] == ("insufficient_storage" if answer == 507 else "unavailable")
        store.fail_on = ""
        assert http.get(url, headers=AUTH).content == b"old"                  # the old version is intact
        doc = http.get(protocol.PATH_OBJECT.format(oaio_id="obj-1"), headers=AUTH).json()
        assert doc["version"] == 2 and [f["size"] for f in doc["files"]] == [3]
    assert _leftovers(app) == (0, [])


def test_a_store_error_on_a_tus_chunk_answers_json_and_the_upload_resumes(app):
    store = app.state.oaiofs.blobs
    with TestClient(app, raise_server_exceptions=False) as http:
        assert http.post(protocol.PATH_OBJECTS, json={"oaio_id": "obj-2", "values": {}}, headers=AUTH).status_code == 201
        created = http.post(protocol.PATH_UPLOADS, headers={
            **AUTH, "Tus-Resumable": protocol.TUS_VERSION, "Upload-Length": "10",
            "Upload-Metadata": protocol.encode_upload_metadata({protocol.META_OAIO_ID: "obj-2",
                                                                protocol.META_PATH: "t.bin"})})
        assert created.status_code == 201, created.text
        url = created.headers["Location"]
        chunk = {**AUTH, "Tus-Resumable": protocol.TUS_VERSION, "Content-Type": protocol.TUS_CONTENT_TYPE,
                 "Upload-Offset": "0"}
        store.fail_on, store.code, store.status = "staging_write", "QuotaExceeded", 403
        resp = http.patch(url, content=b"0123456789", headers=chunk)
        assert resp.status_code == 507 and resp.json()["error"] == "insufficient_storage"
        head = http.head(url, headers={**AUTH, "Tus-Resumable": protocol.TUS_VERSION})
        assert head.headers["Upload-Offset"] == "0"                          # nothing counted as received
        store.fail_on = ""
        assert http.patch(url, content=b"0123456789", headers=chunk).status_code == 204
        assert http.get(protocol.PATH_FILE.format(oaio_id="obj-2", path="t.bin"), headers=AUTH).content == b"0123456789"
    assert _leftovers(app)[1] == []          # no staging (the completed upload's row stays until it expires)


def test_a_one_hop_route_never_answers_success_for_a_failed_commit(app):
    router = APIRouter(route_class=OneHopRoute)

    @router.post("/test/one-hop-duplicate")
    def duplicate(user: User = Depends(get_current_user), db: Session = Depends(get_db)) -> dict:
        db.add(User(username=user.username, password_hash="x"))     # the unique violation shows at commit
        return {"ok": True}

    @router.post("/test/one-hop-refused")
    def refused(db: Session = Depends(get_db)) -> Any:
        from fastapi.responses import JSONResponse
        db.add(User(username="rolled-back", password_hash="x"))
        return JSONResponse({"error": "conflict", "message": "no", "detail": {}}, status_code=409)

    app.include_router(router)
    with TestClient(app, raise_server_exceptions=False) as http:
        resp = http.post("/test/one-hop-duplicate", headers=AUTH)
        assert resp.status_code == 500 and resp.json()["error"] == "internal"
        assert http.post("/test/one-hop-duplicate").status_code == 401        # auth runs in the same hop
        assert http.post("/test/one-hop-refused").status_code == 409
    with app.state.oaiofs.sessionmaker() as db:
        assert db.scalar(select(func.count()).select_from(User)) == 1       # nothing of either was kept
