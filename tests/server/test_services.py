"""Service-layer tests on a real (migrated) SQLite database, without HTTP.

``objects.commit_file`` is the seam the transfer service calls from tus and
plain PUT; the listing must need a fixed number of queries however many
objects there are.
"""
from __future__ import annotations

import json

import pytest
from sqlalchemy import event, select

from oaiofs import protocol
from oaiofs.errors import AlreadyExists, Conflict, InvalidValue, NotEmpty, NotFound, VersionConflict
from oaiofs.server import db as dbmod, objects, security
from oaiofs.server.access import load_object
from oaiofs.server.changes import Notifier, fetch
from oaiofs.server.models import Change, FileEntry, User

pytestmark = pytest.mark.backend_neutral     # docs/testing.md: not rerun on PostgreSQL + S3

SHA = "ab" * 32
KEY = f"sha256/ab/ab/{SHA}"


@pytest.fixture
def session_factory(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    dbmod.run_migrations(url)
    engine = dbmod.make_engine(url)
    yield dbmod.make_sessionmaker(engine, notifier=Notifier())
    engine.dispose()


@pytest.fixture
def alice(session_factory):
    with session_factory.begin() as db:
        user = User(username="alice", password_hash=security.hash_password("pw"))
        db.add(user)
    return user


def _new_object(session_factory, user, oaio_id="obj1"):
    with session_factory.begin() as db:
        objects.create_object(db, db.get(User, user.id), {"k": 1}, oaio_id)


def _commit(session_factory, user, path, base_version=None, oaio_id="obj1", size=3):
    with session_factory.begin() as db:
        obj, _ = load_object(db, db.get(User, user.id), oaio_id, "update", for_update=True)
        entry = objects.commit_file(db, user, obj, path, blob_key=KEY, size=size, sha256=SHA, mtime=1234.5,
                                    base_version=base_version)
        return entry.version, obj.version


def _doc(session_factory, user, oaio_id="obj1"):
    with session_factory() as db:
        obj, right = load_object(db, db.get(User, user.id), oaio_id)
        return objects.object_doc(obj, right)


def test_commit_file_creates_parents_bumps_versions_and_emits(session_factory, alice):
    _new_object(session_factory, alice)
    file_version, obj_version = _commit(session_factory, alice, "a/b/c.txt", base_version=0)
    assert file_version == obj_version == 2
    doc = _doc(session_factory, alice)
    kinds = {f["path"]: f["kind"] for f in doc["files"]}
    assert kinds == {"a": "dir", "a/b": "dir", "a/b/c.txt": "file"}
    entry = next(f for f in doc["files"] if f["path"] == "a/b/c.txt")
    assert entry["sha256"] == SHA and entry["size"] == 3 and entry["mtime"] == 1234.5
    with session_factory() as db:
        events, _cursor = fetch(db, alice.id, 0, 100)
    assert [e["type"] for e in events] == [protocol.EVENT_CREATED, protocol.EVENT_UPDATED]
    assert events[-1]["data"]["changed_files"] == ["a", "a/b", "a/b/c.txt"]
    assert events[-1]["data"]["version"] == 2

    # a new version needs the current file version as base
    assert _commit(session_factory, alice, "a/b/c.txt", base_version=2) == (3, 3)
    with pytest.raises(VersionConflict) as info:
        _commit(session_factory, alice, "a/b/c.txt", base_version=2)
    assert info.value.detail["current_version"] == 3
    with pytest.raises(VersionConflict):
        _commit(session_factory, alice, "a/b/c.txt", base_version=0)     # "must not exist yet"
    assert _doc(session_factory, alice)["version"] == 3                  # refused changes changed nothing


def test_commit_file_refuses_kind_clashes_and_bad_paths(session_factory, alice):
    _new_object(session_factory, alice)
    _commit(session_factory, alice, "a/file")
    with pytest.raises(Conflict):
        _commit(session_factory, alice, "a")               # a folder cannot become a file
    with pytest.raises(Conflict):
        _commit(session_factory, alice, "a/file/x")        # a file cannot be a folder
    for bad in ("../x", "/abs", "a//b", "a\x00b", "values.json", "x" * 256):
        with pytest.raises(InvalidValue):
            _commit(session_factory, alice, bad)
    assert _doc(session_factory, alice)["version"] == 2


def test_move_and_delete_of_folders(session_factory, alice):
    _new_object(session_factory, alice)
    _commit(session_factory, alice, "src/one.txt")
    _commit(session_factory, alice, "src/sub/two.txt")
    _commit(session_factory, alice, "other.txt")
    with session_factory.begin() as db:
        obj, _ = load_object(db, db.get(User, alice.id), "obj1", "update", for_update=True)
        with pytest.raises(InvalidValue):
            objects.move(db, alice, obj, "src", "src/sub/inside")
        with pytest.raises(AlreadyExists):
            objects.move(db, alice, obj, "src/one.txt", "other.txt")
        with pytest.raises(Conflict):
            objects.move(db, alice, obj, "src", "other.txt", overwrite=True)
        new_paths = objects.move(db, alice, obj, "src", "dst/moved")
    assert sorted(new_paths) == ["dst/moved", "dst/moved/one.txt", "dst/moved/sub", "dst/moved/sub/two.txt"]
    doc = _doc(session_factory, alice)
    paths = [f["path"] for f in doc["files"]]
    assert not any(p.startswith("src") for p in paths) and "dst" in paths
    file_version = next(f["version"] for f in doc["files"] if f["path"] == "dst/moved/one.txt")
    assert file_version == doc["version"]
    with session_factory.begin() as db:
        obj, _ = load_object(db, db.get(User, alice.id), "obj1", "update", for_update=True)
        with pytest.raises(VersionConflict):
            objects.move(db, alice, obj, "other.txt", "dst/moved/one.txt", base_version=1, overwrite=True)
        objects.make_dir(db, alice, obj, "empty")
        with pytest.raises(NotEmpty):
            objects.move(db, alice, obj, "empty", "dst", overwrite=True)
        objects.move(db, alice, obj, "other.txt", "dst/moved/one.txt", overwrite=True)
        removed = objects.delete_path(db, alice, obj, "dst")
        assert "dst/moved/sub/two.txt" in removed
        with pytest.raises(NotFound):
            objects.delete_path(db, alice, obj, "dst")
    assert [f["path"] for f in _doc(session_factory, alice)["files"]] == ["empty"]


def test_listing_needs_a_fixed_number_of_queries(session_factory, alice):
    for i in range(60):
        _new_object(session_factory, alice, f"obj{i:03d}")
        _commit(session_factory, alice, f"d{i}/f.txt", oaio_id=f"obj{i:03d}")
    statements = []
    engine = session_factory.kw["bind"]
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    with session_factory() as db:
        user = db.get(User, alice.id)
        event.listen(engine, "before_cursor_execute", listener)
        try:
            docs = objects.list_visible(db, user)
        finally:
            event.remove(engine, "before_cursor_execute", listener)
    assert len(docs) == 60 and all(len(d["files"]) == 2 for d in docs)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 2, selects


def test_change_rows_are_one_per_recipient(session_factory, alice):
    _new_object(session_factory, alice)
    with session_factory() as db:
        rows = db.scalars(select(Change)).all()
    assert len(rows) == 1 and json.loads(rows[0].data_json)["actor"] == "alice"
    with session_factory() as db:
        assert db.scalar(select(FileEntry.id)) is None


def test_refusals_leave_the_session_unchanged(session_factory, alice):
    """Every refusal is raised before the first change, even inside one open transaction."""
    _new_object(session_factory, alice)
    _commit(session_factory, alice, "file.txt")
    _commit(session_factory, alice, "other.txt")
    with session_factory() as db:
        obj, _ = load_object(db, db.get(User, alice.id), "obj1", "update", for_update=True)
        before = (obj.version, sorted(f.path for f in obj.files))
        for refused in (lambda: objects.move(db, alice, obj, "other.txt", "file.txt/inside"),
                        lambda: objects.move(db, alice, obj, "other.txt", "file.txt", overwrite=False),
                        lambda: objects.make_dir(db, alice, obj, "file.txt/sub"),
                        lambda: objects.commit_file(db, alice, obj, "file.txt/x", blob_key=KEY, size=1, sha256=SHA,
                                                    mtime=None, base_version=None)):
            with pytest.raises(Conflict):
                refused()
            assert not db.new and not db.deleted and (obj.version, sorted(f.path for f in obj.files)) == before
        db.rollback()
