"""The journal's metadata ops take the server's compact answers (issue 16, vfs/compact.py): a real
Drive (no FUSE) against the real server. mkdir, chmod/utimens, rename, unlink, symlink and rmdir
must not fetch the whole object after each op; the drive's document must still list exactly what
the server holds; a second drive with an empty cache reads everything back.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from oaiofs.drive import Drive, DriveConfig
from oaiofs.vfs.compact import expand
from tests.conftest import PASSWORD, ServerProcess, wait_until

pytestmark = pytest.mark.timeout(300)


def _drive(server: ServerProcess, user: str, cache: Path) -> Drive:
    drive = Drive(DriveConfig(server=server.url, user=user, password=PASSWORD, cache_dir=cache, long_poll_s=2.0))
    drive.start()
    return drive


def _count_journal_gets(drive: Drive) -> list[str]:
    """Whole object documents the journal's workers got from the server (a GET or a mutation's
    full answer; the feed's own refetches are not counted)."""
    seen: list[str] = []

    def counting(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = real(*args, **kwargs)
            if threading.current_thread().name.startswith("oaiofs-journal") and "files" in result:
                seen.append(name)
            return result
        return call
    for name in ("get_object", "make_dir", "set_file_meta", "make_link", "delete_file", "move"):
        setattr(drive.api, name, counting(name, getattr(drive.api, name)))
    return seen


def _files(doc: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """What a document says of each entry (folder mtimes left out: see vfs/compact.py)."""
    return {f["path"]: (f.get("kind"), f.get("size"), f.get("sha256"), f.get("version"), f.get("mode"),
                        f.get("target"), None if f.get("kind") == "dir" else f.get("mtime_ns"))
            for f in doc["files"]}


def test_metadata_ops_do_not_fetch_the_whole_object(live_server: ServerProcess, make_user: Any,
                                                     tmp_path: Path) -> None:
    user = make_user("compact")
    drive = _drive(live_server, user, tmp_path / "c1")
    vfs = drive.vfs
    try:
        vfs.mkdir("/obj", 0o755)
        fh = vfs.create("/obj/seed.txt", 0o644)
        vfs.write(fh, 0, b"seed")
        vfs.release(fh)
        assert drive.journal.wait_idle(60)
        oaio_id = vfs.ns.resolve("/obj").oaio_id
        gets = _count_journal_gets(drive)
        drive.journal.stop()                    # queued first, applied in one go
        meta_ops = 0
        for d in range(6):
            vfs.mkdir(f"/obj/d{d}", 0o755)
            vfs.symlink("../seed.txt", f"/obj/d{d}/link")
            vfs.utimens(f"/obj/d{d}", (0, 1_600_000_000_000_000_000 + d))
            meta_ops += 3
        vfs.chmod("/obj/seed.txt", 0o600)
        vfs.rename("/obj/d0", "/obj/e0")
        vfs.rename("/obj/d1/link", "/obj/d2/link1")
        vfs.unlink("/obj/d3/link")
        vfs.rmdir("/obj/d3")
        meta_ops += 5
        drive.journal.start()
        assert drive.journal.wait_idle(120), drive.journal.status()
        assert drive.journal.status()["failed"] == []
        # every op was answered compactly and completed from the drive's own document
        assert gets == [], gets
        server_doc = drive.api.get_object(oaio_id)
        wait_until(lambda: _files(vfs.ns.doc(oaio_id) or {"files": []}) == _files(server_doc), timeout=30,
                   message="the drive's document to list what the server holds")
        assert vfs.ns.doc(oaio_id) == server_doc          # the whole document, folder mtimes too
        assert vfs.readlink("/obj/d2/link1") == "../seed.txt"
        assert vfs.getattr("/obj/e0").mtime == pytest.approx(1.6e9)
        assert not any(name == "d3" for name, _ in vfs.ns.list_dir(vfs.ns.resolve("/obj")))
    finally:
        drive.stop()
    fresh = _drive(live_server, user, tmp_path / "fresh")        # an empty cache
    try:
        names = sorted(name for name, _ in fresh.vfs.ns.list_dir(fresh.vfs.ns.resolve("/obj")))
        assert names == ["d1", "d2", "d4", "d5", "e0", "seed.txt", "values.json"]
        assert fresh.vfs.getattr("/obj/seed.txt").mode & 0o777 == 0o600
        assert fresh.vfs.readlink("/obj/e0/link") == "../seed.txt"
        fh, _ = fresh.vfs.open("/obj/seed.txt", os.O_RDONLY)
        assert fresh.vfs.read(fh, 0, 100) == b"seed"
        fresh.vfs.release(fh)
    finally:
        fresh.stop()


def test_uploads_do_not_fetch_the_whole_object(live_server: ServerProcess, make_user: Any,
                                                tmp_path: Path) -> None:
    """Small files (batches, also lone files: a batch of one) in nested folders, overwrites and
    files in new folders: the journal builds the object's document from the batches' compact
    answers (no whole-object GET after a commit) and it equals the server's, every field."""
    user = make_user("compactput")
    drive = _drive(live_server, user, tmp_path / "c1")
    vfs = drive.vfs

    def write(path: str, data: bytes) -> None:
        fh = vfs.create(path, 0o644)
        vfs.write(fh, 0, data)
        vfs.release(fh)
    try:
        vfs.mkdir("/obj", 0o755)
        write("/obj/seed.txt", b"seed")
        assert drive.journal.wait_idle(60)
        oaio_id = vfs.ns.resolve("/obj").oaio_id
        gets = _count_journal_gets(drive)
        for i in range(8):                      # one at a time: lone files
            write(f"/obj/one{i}.txt", b"x" * i)
            assert drive.journal.wait_idle(60)
        drive.journal.stop()                    # queued first: batches
        for d in range(3):
            vfs.mkdir(f"/obj/d{d}", 0o755)
            vfs.mkdir(f"/obj/d{d}/e", 0o755)
            for i in range(10):
                write(f"/obj/d{d}/e/f{i}.txt", f"{d}/{i}".encode())
        write("/obj/seed.txt", b"seed, again")
        drive.journal.start()
        assert drive.journal.wait_idle(120), drive.journal.status()
        for i in range(5):                      # overwrites, one at a time
            write(f"/obj/d1/e/f{i}.txt", b"new" * i)
            assert drive.journal.wait_idle(60)
        assert drive.journal.status()["failed"] == []
        assert gets == [], gets
        server_doc = drive.api.get_object(oaio_id)
        assert vfs.ns.doc(oaio_id) == server_doc          # the whole document, folder mtimes too
        assert len([f for f in server_doc["files"] if f["kind"] == "file"]) == 1 + 8 + 30
    finally:
        drive.stop()
    fresh = _drive(live_server, user, tmp_path / "fresh")        # an empty cache
    try:
        fh, _ = fresh.vfs.open("/obj/d1/e/f3.txt", os.O_RDONLY)
        assert fresh.vfs.read(fh, 0, 100) == b"newnewnew"
        fresh.vfs.release(fh)
        fh, _ = fresh.vfs.open("/obj/d2/e/f9.txt", os.O_RDONLY)
        assert fresh.vfs.read(fh, 0, 100) == b"2/9"
        fresh.vfs.release(fh)
    finally:
        fresh.stop()


def test_large_uploads_do_not_fetch_the_whole_object(live_server: ServerProcess, make_user: Any,
                                                      tmp_path: Path) -> None:
    """Files too big for a batch go by tus, whose answer is only a version: the journal asks for
    the file's compact info and builds the object's document from it, also after a file streamed
    while written (its mode/mtime set after the upload). No whole-object GET; the document equals
    the server's, every field; a second drive with an empty cache reads the bytes back."""
    user = make_user("compacttus")
    drive = _drive(live_server, user, tmp_path / "c1")
    vfs = drive.vfs
    big = {"/obj/seed.bin": os.urandom(300 << 10), "/obj/new/dir/a.bin": os.urandom(400 << 10),
           "/obj/streamed.bin": os.urandom(9 << 20)}

    def write(path: str, data: bytes, piece: int = 1 << 20) -> None:
        fh = vfs.create(path, 0o640)
        for offset in range(0, len(data), piece):
            vfs.write(fh, offset, data[offset:offset + piece])
        vfs.release(fh)
    try:
        vfs.mkdir("/obj", 0o755)
        write("/obj/seed.bin", b"seed")
        assert drive.journal.wait_idle(60)
        oaio_id = vfs.ns.resolve("/obj").oaio_id
        gets = _count_journal_gets(drive)
        infos: list[str] = []
        real_info = drive.api.file_info

        def counting_info(*args: Any, **kwargs: Any) -> Any:
            infos.append(args[1])
            return real_info(*args, **kwargs)
        drive.api.file_info = counting_info  # type: ignore[method-assign]
        write("/obj/seed.bin", big["/obj/seed.bin"])            # an overwrite
        assert drive.journal.wait_idle(60)
        vfs.mkdir("/obj/new", 0o755)
        vfs.mkdir("/obj/new/dir", 0o700)
        write("/obj/new/dir/a.bin", big["/obj/new/dir/a.bin"])   # a new file in new folders
        assert drive.journal.wait_idle(60)
        write("/obj/streamed.bin", big["/obj/streamed.bin"])    # streamed before its release
        vfs.utimens("/obj/streamed.bin", (0, 1_500_000_000_123_456_789))
        assert drive.journal.wait_idle(120), drive.journal.status()
        assert drive.journal.status()["failed"] == []
        assert gets == [], gets
        assert sorted(set(infos)) == ["new/dir/a.bin", "seed.bin", "streamed.bin"]
        server_doc = drive.api.get_object(oaio_id)
        assert vfs.ns.doc(oaio_id) == server_doc          # the whole document, folder mtimes too
        streamed = next(f for f in server_doc["files"] if f["path"] == "streamed.bin")
        assert streamed["mtime_ns"] == 1_500_000_000_123_456_789 and streamed["mode"] == 0o640
    finally:
        drive.stop()
    fresh = _drive(live_server, user, tmp_path / "fresh")        # an empty cache
    try:
        for path, data in big.items():
            fh, _ = fresh.vfs.open(path, os.O_RDONLY)
            got = b"".join(fresh.vfs.read(fh, offset, 1 << 20) for offset in range(0, len(data), 1 << 20))
            fresh.vfs.release(fh)
            assert got == data, path
    finally:
        fresh.stop()


def test_expand_refuses_what_it_cannot_know() -> None:
    """Another writer's change in between (a version gap), a folder made or touched on the way
    that the answer does not list (an older server), or no document: the caller fetches the whole
    object instead. A complete answer gives the server's folder mtime, not a guess."""
    old = {"oaio_id": "o", "version": 4, "access_right": "C", "stamp": "20260101000000000000",
           "files": [{"path": "a", "kind": "dir", "mtime": 1.0, "mtime_ns": 1},
                     {"path": "a/x", "kind": "file", "size": 1, "version": 2}]}
    stamp = "20260102030405123456"
    folder = {"path": "a", "kind": "dir", "mtime": 2.0, "mtime_ns": 2_000_000_000}
    answer = {"oaio_id": "o", "version": 5, "previous_version": 4, "stamp": stamp, "access_right": "C",
              "updated": "2026-01-02T03:04:05.123456+00:00",
              "changed": [{"path": "a/y", "kind": "file", "size": 1, "version": 5}, folder], "removed": ["a/x"]}
    doc = expand(old, answer, touch=True)
    assert doc is not None and [f["path"] for f in doc["files"]] == ["a", "a/y"] and doc["version"] == 5
    assert doc["files"][0] == folder and "compact" not in doc and old["version"] == 4
    assert doc["updated"] == answer["updated"]
    assert expand(old, dict(answer, version=6, previous_version=5), touch=True) is None
    assert expand(None, answer, touch=True) is None
    assert expand(old, dict(answer, changed=[{"path": "b/y", "kind": "file"}]), touch=True) is None
    assert expand(old, dict(answer, access_right="r"), touch=True) is None
    older = {k: v for k, v in answer.items() if k != "previous_version"}
    assert expand(old, dict(older, changed=answer["changed"][:1]), touch=True) is None   # "a" not listed
    assert expand(old, older, touch=True) == doc          # an older server's exact answer: version - 1
    meta = dict(older, changed=[dict(old["files"][1], mode=0o600)], removed=[])
    assert expand(old, meta, touch=False) is not None     # chmod touches no folder
    assert expand(doc, answer, touch=True) == doc         # the feed fetched that version first


def test_the_feed_does_not_refetch_the_echo_of_what_the_drive_already_shows(tmp_path: Path) -> None:
    """An ``updated`` event at or below the version of the drive's own (server-sent) document is
    the echo of its own commit: no whole-object GET. A newer version, another event type, or a
    document built from a compact answer is the server's document (no mark, no refetch)."""
    from oaiofs import protocol
    from oaiofs.vfs.feed import ChangeFeed, ListingStore
    from oaiofs.vfs.namespace import Namespace

    ns = Namespace("me")
    ns.load([{"oaio_id": "a", "version": 5, "access_right": "C", "files": []},
             {"oaio_id": "b", "version": 5, "access_right": "C", "files": []}])
    feed = ChangeFeed(None, ns, None, ListingStore(tmp_path / "l.json"), {})  # type: ignore[arg-type]

    def event(oaio_id: str, version: int, kind: str = protocol.EVENT_UPDATED) -> dict[str, Any]:
        return {"type": kind, "subject": oaio_id, "data": {"oaio_id": oaio_id, "version": version}}
    assert feed._known([event("a", 4), event("a", 5)]) == {"a"}
    assert feed._known([event("a", 5), event("a", 6)]) == set()
    assert feed._known([event("a", 5, protocol.EVENT_SUBSCRIBED)]) == set()
    assert feed._known([event("b", 5), event("c", 1)]) == {"b"}


def test_an_event_of_an_object_the_journal_writes_waits_for_its_answer(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """While the journal has ops of an object in flight, a newer ``updated`` event of it is not
    fetched (the op's answer brings the document; fetching it too rebuilt the view): it waits.
    Once the document shows the version, it is forgotten; if the journal is done and the document
    still does not show it (another writer), or it waited DEFER_MAX_S, it is fetched."""
    from oaiofs import protocol
    from oaiofs.vfs import feed as feed_module
    from oaiofs.vfs.feed import ChangeFeed, ListingStore
    from oaiofs.vfs.namespace import Namespace

    busy = {"a", "b", "c"}
    clock = [1000.0]
    monkeypatch.setattr(feed_module.time, "monotonic", lambda: clock[0])
    ns = Namespace("me")
    ns.load([{"oaio_id": oid, "version": 5, "access_right": "C", "files": []} for oid in "abcd"])
    feed = ChangeFeed(None, ns, None, ListingStore(tmp_path / "l.json"), {},  # type: ignore[arg-type]
                      busy=lambda oaio_id: oaio_id in busy)

    def event(oaio_id: str, version: int) -> dict[str, Any]:
        return {"type": protocol.EVENT_UPDATED, "subject": oaio_id, "data": {"oaio_id": oaio_id, "version": version}}
    assert feed._known([event(oid, 6) for oid in "abcd"]) == {"a", "b", "c"}    # d: nobody writes it
    assert feed._due() == []
    ns.put_doc({"oaio_id": "a", "version": 6, "access_right": "C", "files": []})   # a's answer came
    busy.discard("b")                                                             # b's did not bring 6
    assert feed._due() == ["b"]
    clock[0] += feed_module.DEFER_MAX_S + 0.1                                     # c waited too long
    assert feed._due() == ["c"]
    assert feed._due() == [] and not feed._deferred
