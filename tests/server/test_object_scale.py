"""Server: the cost of one file operation does not grow with the object (rows loaded, not time).

In-process app (the real routes, SQLite): every operation is run once on an object with
10 000 files and once on one with 100 files in the same folders; an SQLAlchemy listener counts the file rows
loaded as ORM objects and the statements sent. Both counts must be the same in the two
objects (the other 10 000 rows are never read). Also: paging of ``GET /objects/{id}``.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import tarfile
from typing import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, insert

from oaiofs import protocol
from oaiofs.server import db as dbmod, security
from oaiofs.server.app import create_app
from oaiofs.server.models import FileEntry, OaiObject, User
from oaiofs.server.settings import ServerSettings

N_FILES = 10_000
FOLDER_OPS = {"move folder", "delete folder"}
AUTH = {"Authorization": "Basic " + base64.b64encode(b"scale:pw-scale-123").decode()}


@pytest.fixture
def app(tmp_path):
    settings = ServerSettings(data_dir=tmp_path / "data", db_url=f"sqlite:///{tmp_path / 'scale.db'}")
    dbmod.run_migrations(settings.database_url)
    application = create_app(settings)
    with application.state.oaiofs.sessionmaker.begin() as db:
        db.add(User(username="scale", password_hash=security.hash_password("pw-scale-123")))
    return application


def _fill(app, oaio_id: str, n: int) -> None:
    """``n`` files in 100 folders, inserted directly (fast)."""
    if not n:
        return
    with app.state.oaiofs.sessionmaker.begin() as db:
        obj = db.query(OaiObject).filter_by(oaio_id=oaio_id).one()
        rows = [{"path": f"d{i % 100}", "kind": "dir"} for i in range(min(n, 100))]
        rows += [{"path": f"d{i % 100}/f{i}.txt", "kind": "file"} for i in range(n)]
        db.execute(insert(FileEntry), [
            dict(row, object_id=obj.id, path_hash=hashlib.sha256(row["path"].encode()).hexdigest(), size=1,
                 sha256="0" * 64 if row["kind"] == "file" else None,
                 blob_key=None, version=1, stamp=obj.stamp, mtime=1.0, mtime_ns=10**9,
                 mode=0o644 if row["kind"] == "file" else 0o755) for row in rows])


VM_STEPS: dict[str, int] = {"k": 0}       # thousands of SQLite VM instructions run (rows scanned show here)


def _count_vm(dbapi_connection, _record) -> None:
    def tick() -> int:
        VM_STEPS["k"] += 1
        return 0
    dbapi_connection.set_progress_handler(tick, 1000)


@contextlib.contextmanager
def counting(app) -> Iterator[dict[str, int]]:
    counts = {"loaded": 0, "statements": 0}
    engine = app.state.oaiofs.engine
    if not event.contains(engine, "connect", _count_vm):
        event.listen(engine, "connect", _count_vm)
        engine.dispose()                      # new connections get the progress handler
    vm_start = VM_STEPS["k"]

    def loaded(_target, _context):
        counts["loaded"] += 1

    def statement(_conn, _cursor, sql, *_args):
        counts["statements"] += 1

    event.listen(FileEntry, "load", loaded)
    event.listen(engine, "before_cursor_execute", statement)
    try:
        yield counts
    finally:
        counts["vm_ksteps"] = VM_STEPS["k"] - vm_start
        event.remove(FileEntry, "load", loaded)
        event.remove(engine, "before_cursor_execute", statement)


def _ops(http: TestClient, oid: str) -> list[tuple[str, object]]:
    base = f"{protocol.API_PREFIX}/objects/{oid}"
    batch = io.BytesIO()
    with tarfile.open(fileobj=batch, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        files = [("d7/b1.txt", b"b1"), ("d8/b2.txt", b"b2")]
        manifest = protocol.batch_manifest([protocol.BatchFile(p, d, hashlib.sha256(d).hexdigest()) for p, d in files])
        for name, data in [(protocol.BATCH_MANIFEST_NAME, manifest), ("0", files[0][1]), ("1", files[1][1])]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return [
        ("put new", lambda: http.put(f"{base}/files/d3/new.txt", content=b"new", headers=AUTH)),
        ("put again", lambda: http.put(f"{base}/files/d3/new.txt", content=b"newer", headers=AUTH)),
        ("put deep", lambda: http.put(f"{base}/files/x/y/z/deep.txt", content=b"deep", headers=AUTH)),
        ("chmod", lambda: http.patch(f"{base}/files/d3/new.txt?compact=true", json={"mode": 0o600},
                                     headers=AUTH)),
        ("link", lambda: http.put(f"{base}/links/d4/ln?compact=true", json={"target": "../d3/new.txt"},
                                  headers=AUTH)),
        ("mkdir", lambda: http.post(f"{base}/dirs/d5/sub?compact=true", headers=AUTH)),
        ("move file", lambda: http.post(f"{base}/move?compact=true", json={"src": "d3/new.txt", "dst": "d6/m.txt"},
                                        headers=AUTH)),
        ("move folder", lambda: http.post(f"{base}/move?compact=true", json={"src": "x", "dst": "d9/x"},
                                          headers=AUTH)),
        ("delete file", lambda: http.delete(f"{base}/files/d6/m.txt?compact=true", headers=AUTH)),
        ("delete folder", lambda: http.delete(f"{base}/files/d9/x?compact=true", headers=AUTH)),
        ("batch", lambda: http.post(f"{base}/batch?compact=true", content=batch.getvalue(),
                                    headers={**AUTH, "Content-Type": protocol.BATCH_CONTENT_TYPE})),
    ]


def _measure(app, http: TestClient, n: int) -> dict[str, dict[str, int]]:
    oid = f"scale-{n}"
    assert http.post(f"{protocol.API_PREFIX}/objects", json={"oaio_id": oid}, headers=AUTH).status_code == 201
    _fill(app, oid, n)
    measured = {}
    for name, call in _ops(http, oid):
        with counting(app) as counts:
            resp = call()
        assert resp.status_code in (200, 201), (name, resp.text)
        measured[name] = dict(counts)
    return measured


def test_one_file_operation_touches_the_same_rows_in_a_10000_file_object_as_in_a_100_file_one(app):
    with TestClient(app) as http:
        small = _measure(app, http, 100)                 # the same 100 folders, one file in each
        big = _measure(app, http, N_FILES)
    rows = {name: {k: v for k, v in c.items() if k != "vm_ksteps"} for name, c in big.items()}
    assert rows == {name: {k: v for k, v in c.items() if k != "vm_ksteps"} for name, c in small.items()}, \
        {k: (small[k], big[k]) for k in big if big[k] != small[k]}
    # and SQLite did not scan the object's rows either (a scan of 10 000 rows is ~80k VM steps). Folder
    # moves/deletes find their subtree by path prefix: SQLite compares every path of the object (no
    # row is loaded, but the paths are read); an index for that is not there yet (see docs/api.md)
    scanned = {name: (small[name]["vm_ksteps"], c["vm_ksteps"]) for name, c in big.items()
               if c["vm_ksteps"] > 2 * small[name]["vm_ksteps"] + 20 and name not in FOLDER_OPS}
    assert not scanned, scanned
    assert all(c["loaded"] <= 12 for c in big.values()), big


def test_get_object_pages_its_file_list(app):
    with TestClient(app) as http:
        oid = "paged"
        http.post(f"{protocol.API_PREFIX}/objects", json={"oaio_id": oid}, headers=AUTH)
        _fill(app, oid, 2_500)
        whole = http.get(f"{protocol.API_PREFIX}/objects/{oid}", headers=AUTH).json()
        assert len(whole["files"]) == 2_600 and "files_next" not in whole
        paths, after, pages = [], None, 0
        while True:
            params = {"limit": 1000} if after is None else {"limit": 1000, "after": after}
            page = http.get(f"{protocol.API_PREFIX}/objects/{oid}", params=params, headers=AUTH).json()
            pages += 1
            assert len(page["files"]) <= 1000 and page["version"] == whole["version"]
            paths += [f["path"] for f in page["files"]]
            after = page["files_next"]
            if after is None:
                break
        assert pages == 3 and sorted(paths) == sorted(f["path"] for f in whole["files"]) and len(set(paths)) == 2_600
        for bad in ({"limit": 0}, {"after": "x"}, {"limit": protocol.MAX_FILES_PAGE + 1}):
            resp = http.get(f"{protocol.API_PREFIX}/objects/{oid}", params=bad, headers=AUTH)
            assert resp.status_code in (400, 422) and set(resp.json()) == {"error", "message", "detail"}
