"""VFS-level tests (fakes, no FUSE) of issue 12's drive fixes: offline truncating writes,
name lengths, folder link counts, appends seen by open readers, local folders during feed updates."""
from __future__ import annotations

import errno
import os

import pytest

from oaiofs.vfs.cache import Cache
from oaiofs.vfs.errors import NotCached
from oaiofs.vfs.fetcher import Fetcher
from oaiofs.vfs.namespace import Namespace
from oaiofs.vfs.vfs import Vfs, VfsOptions
from tests.drive.fakes import FakeJournal, FakeSource, object_doc

MiB = 1 << 20


@pytest.fixture
def env(tmp_path):
    files = {("o1", "a.txt"): b"alpha", ("o1", "big.bin"): b"B" * (2 * MiB)}
    source = FakeSource(dict(files))
    cache = Cache(tmp_path / "cache", quota_bytes=64 * MiB)
    journal = FakeJournal(tmp_path / "cache" / "journal")
    ns = Namespace("me")
    vfs = Vfs(ns, cache, Fetcher(source, cache), journal, VfsOptions())
    ns.set_pending_source(vfs.writeback.pending_ops)
    ns.load([object_doc("o1", "One", {p: b for (_, p), b in files.items()})])
    return vfs, journal, source


# --- item 5: a truncating write offline needs no old bytes ---------------------------------
@pytest.mark.parametrize("name", ["a.txt", "big.bin"])
def test_offline_truncating_write_of_an_uncached_file(env, name):
    """libfuse2 sends open(O_WRONLY) without O_TRUNC, then truncate(0) with the handle."""
    vfs, journal, source = env
    source.offline = True
    fh, _ = vfs.open(f"/One/{name}", os.O_WRONLY)
    vfs.truncate(f"/One/{name}", 0, fh)
    vfs.write(fh, 0, b"x\n")
    vfs.release(fh)
    op = journal.ops[-1]
    assert (op.kind, op.path, op.size, op.base_version) == ("put_file", name, 2, 1)
    assert open(op.data_file, "rb").read() == b"x\n"
    fh, _ = vfs.open(f"/One/{name}", os.O_RDONLY)
    assert vfs.read(fh, 0, 100) == b"x\n" and vfs.getattr(f"/One/{name}").size == 2
    vfs.release(fh)


def test_offline_truncate_by_path_then_write(env):
    """``O_TRUNC`` may also arrive as truncate(path, 0) without a handle, before the open."""
    vfs, journal, source = env
    source.offline = True
    vfs.truncate("/One/big.bin", 0)
    fh, _ = vfs.open("/One/big.bin", os.O_WRONLY)
    vfs.write(fh, 0, b"new")
    vfs.release(fh)
    assert open(journal.ops[-1].data_file, "rb").read() == b"new"


def test_offline_partial_write_of_an_uncached_file_still_fails_cleanly(env):
    """Old bytes are needed: EIO at the write, nothing submitted, and it works once online."""
    vfs, journal, source = env
    source.offline = True
    fh, _ = vfs.open("/One/big.bin", os.O_RDWR)                      # the open itself succeeds
    with pytest.raises(NotCached) as exc:
        vfs.write(fh, 10, b"patch")
    assert exc.value.errno == errno.EIO
    with pytest.raises(NotCached):
        vfs.truncate("/One/big.bin", 100, fh)                        # keeps old bytes: needs them too
    source.offline = False
    vfs.write(fh, 10, b"patch")
    vfs.release(fh)
    data = open(journal.ops[-1].data_file, "rb").read()
    assert data == b"B" * 10 + b"patch" + b"B" * (2 * MiB - 15) and len(journal.ops) == 1


def test_offline_open_for_writing_without_a_write_submits_nothing(env):
    vfs, journal, source = env
    source.offline = True
    fh, _ = vfs.open("/One/a.txt", os.O_WRONLY)
    vfs.release(fh)
    assert journal.ops == []
    source.offline = False
    fh, _ = vfs.open("/One/a.txt", os.O_RDONLY)
    assert vfs.read(fh, 0, 10) == b"alpha"
    vfs.release(fh)


# --- item 8: names, link counts, appends seen by readers ----------------------------------
def test_too_long_names_answer_enametoolong_everywhere(env):
    vfs, journal, _ = env
    long = "n" * 256
    ok = "n" * 255
    calls = {"lookup": lambda: vfs.getattr(f"/One/{long}"), "lookup in a folder": lambda: vfs.getattr(f"/One/d/{long}"),
             "lookup of an object": lambda: vfs.getattr(f"/{long}"),
             "create": lambda: vfs.create(f"/One/{long}"), "mkdir": lambda: vfs.mkdir(f"/One/{long}"),
             "mkdir at the root": lambda: vfs.mkdir(f"/{long}"),
             "rename to": lambda: vfs.rename("/One/a.txt", f"/One/{long}"),
             "rename from": lambda: vfs.rename(f"/One/{long}", "/One/b.txt"),
             "unlink": lambda: vfs.unlink(f"/One/{long}"), "rmdir": lambda: vfs.rmdir(f"/One/{long}"),
             "open": lambda: vfs.open(f"/One/{long}", os.O_RDONLY),
             "symlink": lambda: vfs.make_special(f"/One/{long}"),
             "multi-byte": lambda: vfs.create("/One/" + "é" * 128)}             # 256 bytes, 128 characters
    for what, call in calls.items():
        with pytest.raises(Exception) as exc:
            call()
        assert getattr(exc.value, "errno", None) == errno.ENAMETOOLONG, what
    assert journal.ops == []
    fh = vfs.create(f"/One/{ok}")                                    # 255 bytes is fine
    vfs.release(fh)
    with pytest.raises(Exception) as exc:
        vfs.make_special("/One/link")
    assert exc.value.errno == errno.EPERM
    with pytest.raises(Exception) as exc:
        vfs.getattr("/One/missing")
    assert exc.value.errno == errno.ENOENT


def test_folder_link_count_is_two_plus_subfolders(env):
    vfs, _, _ = env
    assert vfs.getattr("/").nlink == 3                                # one object
    assert vfs.getattr("/One").nlink == 2
    vfs.mkdir("/One/d1")
    vfs.mkdir("/One/d2")
    vfs.mkdir("/One/d1/e")
    fh = vfs.create("/One/d1/file.txt")
    vfs.release(fh)
    assert vfs.getattr("/One").nlink == 4 and vfs.getattr("/One/d1").nlink == 3
    assert vfs.getattr("/One/d2").nlink == 2 and vfs.getattr("/One/d1/e").nlink == 2
    vfs.mkdir("/Two")
    assert vfs.getattr("/").nlink == 4


def test_open_reader_sees_a_remote_append(env):
    """tail -f: a read-only handle reads past its version's end into a longer newer version."""
    vfs, _, source = env
    fh, _ = vfs.open("/One/a.txt", os.O_RDONLY)
    assert vfs.read(fh, 0, 4096) == b"alpha"
    assert vfs.read(fh, 5, 4096) == b""                               # at the end, nothing newer yet
    source.files[("o1", "a.txt")] = b"alpha\nbeta\n"                   # another device appended
    vfs.ns.put_doc(object_doc("o1", "One", {"a.txt": b"alpha\nbeta\n", "big.bin": b"B" * (2 * MiB)},
                              version=2))
    assert vfs.getattr("/One/a.txt").size == 11                       # fstat sees the growth
    assert vfs.read(fh, 5, 4096) == b"\nbeta\n"                       # and the read returns the new bytes
    assert vfs.read(fh, 0, 4096) == b"alpha\nbeta\n"
    vfs.release(fh)
    assert vfs._held == {}


def test_open_reader_keeps_its_longer_version_when_the_new_one_is_shorter(env):
    vfs, _, source = env
    fh, _ = vfs.open("/One/a.txt", os.O_RDONLY)
    assert vfs.read(fh, 0, 4096) == b"alpha"
    source.files[("o1", "a.txt")] = b"al"
    vfs.ns.put_doc(object_doc("o1", "One", {"a.txt": b"al", "big.bin": b"B" * (2 * MiB)}, version=2))
    assert vfs.getattr("/One/a.txt").size == 5                        # close-to-open for a shrink
    assert vfs.read(fh, 0, 4096) == b"alpha"
    vfs.release(fh)
    assert vfs.getattr("/One/a.txt").size == 2


# --- item 9: a folder made here never vanishes while its creation is applied -----------------
def _with_dir(doc: dict, path: str, version: int) -> dict:
    doc = dict(doc, version=version, files=[*doc["files"], {"path": path, "kind": "dir", "size": 0,
                                                            "sha256": None, "version": version, "mtime": 2.0e9}])
    return doc


def test_applied_mkdir_stays_visible_while_the_drive_is_told(env):
    """on_applied: the server's document is in the namespace before the op stops being replayed."""
    vfs, journal, _ = env
    vfs.mkdir("/One/d3")
    op = journal.ops[-1]
    seen: list[bool] = []
    real_put = vfs.ns.put_doc

    def put_doc(doc, **kw):                # another thread rebuilds the view in the middle of on_applied
        vfs.ns.local_changed("o1")
        seen.append(vfs.getattr("/One/d3").mode & 0o040000 != 0)
        real_put(doc, **kw)

    vfs.ns.put_doc = put_doc
    base = object_doc("o1", "One", {"a.txt": b"alpha", "big.bin": b"B" * (2 * MiB)})
    vfs.writeback.on_applied(op, _with_dir(base, "d3", 2))
    journal.finish(op)
    assert seen == [True]
    fh = vfs.create("/One/d3/f3.txt")
    vfs.release(fh)


def test_relist_older_than_a_journal_answer_keeps_new_folders_and_objects(env, tmp_path):
    """A listing requested before this mount's changes were applied must not take them back."""
    from oaiofs.vfs.feed import ChangeFeed, ListingStore

    vfs, journal, _ = env
    ns = vfs.ns
    stale = [object_doc("o1", "One", {"a.txt": b"alpha", "big.bin": b"B" * (2 * MiB)}),
             object_doc("gone", "Gone", {})]
    ns.put_doc(stale[1])                                             # known before the listing is asked for
    vfs.mkdir("/New")
    create = journal.ops[-1]
    vfs.mkdir("/One/d3")
    mkdir = journal.ops[-1]

    class Api:
        def list_objects(self):
            # while the listing is on its way, the journal applies both ops and reports the documents
            for op, doc in ((create, object_doc(create.oaio_id, "New", {}, version=1)),
                            (mkdir, _with_dir(stale[0], "d3", 2))):
                vfs.writeback.on_applied(op, doc)
                journal.finish(op)
            return [stale[0]], 7                                     # "gone" was deleted meanwhile

    feed = ChangeFeed(Api(), ns, vfs.cache, ListingStore(tmp_path / "listing.json"), {"server": "x"})
    feed._relist()
    assert vfs.getattr("/One/d3").mode & 0o040000 and vfs.getattr("/New").mode & 0o040000
    assert "Gone" not in dict(vfs.readdir("/"))
    fh = vfs.create("/New/f.txt")
    vfs.release(fh)
    fresh = [object_doc("o1", "One", {"a.txt": b"alpha"}, version=3)]   # a later, newer listing wins
    feed.api = type("Later", (), {"list_objects": lambda self: (fresh, 8)})()
    feed._relist()
    assert sorted(dict(vfs.readdir("/One"))) == ["a.txt", "values.json"]


def test_randomized_local_folders_and_files_while_ops_apply_and_the_feed_relists(env, tmp_path):
    """Bounded randomized concurrency (seeded; ``OAIOFS_STRESS_SEED`` replays): two threads make folders
    and files (in a new object and an existing one) while a journal thread applies their ops and reports
    the server's documents, and a feed thread puts other objects' documents and re-lists with listings
    that are already stale when they arrive. Nothing made here may vanish at any step."""
    import copy
    import hashlib
    import random
    import threading
    import time

    from oaiofs.vfs.feed import ChangeFeed, ListingStore

    vfs, journal, _ = env
    seed = int(os.environ.get("OAIOFS_STRESS_SEED") or random.randrange(1 << 30))
    vfs.mkdir("/New")
    server: dict[str, dict] = {"o1": object_doc("o1", "One", {"a.txt": b"alpha", "big.bin": b"B" * (2 * MiB)})}
    server_lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []

    def apply_ops() -> None:                                   # the journal's worker
        rng = random.Random(f"{seed}-journal")
        while not stop.is_set() or any(o.state == "pending" for o in journal.ops):
            op = next((o for o in list(journal.ops) if o.state == "pending"), None)
            if op is None:
                time.sleep(0.0005)
                continue
            with server_lock:
                doc = server.get(op.oaio_id)
                if op.kind == "create_object":
                    doc = server[op.oaio_id] = object_doc(op.oaio_id, op.values["_name"], {}, version=1)
                else:
                    doc["version"] += 1
                    entry = {"path": op.path, "kind": "dir" if op.kind == "mkdir" else "file", "size": op.size or 0,
                             "sha256": op.sha256, "version": doc["version"], "mtime": 2.0e9}
                    doc["files"] = [f for f in doc["files"] if f["path"] != op.path] + [entry]
                answer = copy.deepcopy(doc)
            if rng.random() < 0.5:
                time.sleep(rng.random() / 1000)
            vfs.writeback.on_applied(op, answer)
            journal.finish(op)

    class Api:                                                 # a listing taken now, delivered a bit later
        def __init__(self, rng: random.Random) -> None:
            self.rng = rng

        def list_objects(self):
            with server_lock:
                docs = copy.deepcopy(list(server.values()))
            time.sleep(self.rng.random() / 200)
            return docs, 1

    def feed() -> None:
        rng = random.Random(f"{seed}-feed")
        change_feed = ChangeFeed(Api(rng), vfs.ns, vfs.cache, ListingStore(tmp_path / "l.json"), {"s": "x"})
        n = 0
        while not stop.is_set():
            n += 1
            with server_lock:
                other = object_doc("o2", "Other", {f"r{i}.txt": b"r" for i in range(n % 50)}, version=n)
                server["o2"] = other
            vfs.ns.put_doc(copy.deepcopy(other))
            if rng.random() < 0.2:
                change_feed._relist()

    made: list[tuple[str, bool]] = []
    made_lock = threading.Lock()

    def check_all(who: str) -> None:
        with made_lock:
            seen = list(made)
        for path, is_dir in seen:
            try:
                attr = vfs.getattr(path)
            except Exception as exc:  # noqa: BLE001 - collected
                errors.append(f"{who}: {path} vanished ({exc!r})")
                return
            if bool(attr.mode & 0o040000) != is_dir:
                errors.append(f"{who}: {path} changed kind")

    def local(name: str) -> None:
        rng = random.Random(f"{seed}-{name}")
        try:
            for step in range(150):
                if errors:
                    return
                top = rng.choice(["/New", "/One"])
                with made_lock:
                    dirs = [p for p, d in made if d and p.startswith(top)]
                parent = rng.choice(dirs) if dirs and rng.random() < 0.5 else top
                if rng.random() < 0.5:
                    d = f"{parent}/{name}{step}"
                    vfs.mkdir(d)
                    with made_lock:
                        made.append((d, True))
                    parent = d
                f = f"{parent}/{name}{step}.txt"
                fh = vfs.create(f)                             # ENOENT here was the bug
                vfs.write(fh, 0, hashlib.sha256(f.encode()).digest())
                vfs.release(fh)
                with made_lock:
                    made.append((f, False))
                check_all(name)
        except Exception as exc:  # noqa: BLE001 - collected
            errors.append(f"{name}: {exc!r}")

    workers = [threading.Thread(target=local, args=(n,)) for n in "ab"]
    helpers = [threading.Thread(target=apply_ops), threading.Thread(target=feed)]
    for t in helpers + workers:
        t.start()
    for t in workers:
        t.join(timeout=120)
    stop.set()
    for t in helpers:
        t.join(timeout=60)
    assert not errors, f"seed {seed}: {errors[:3]}"
    check_all("end")
    assert not errors, f"seed {seed}: {errors[:3]}"
    assert all(o.state == "done" for o in journal.ops)
