"""Bulk copies that set modes and mtimes after each file (``git clone``, ``cp -p``, ``tar x``) on the
Vfs (no FUSE), issue 16: a chmod/utimens right after a file's release rides on its queued upload
(no ``set_meta`` op of its own, so the uploads stay one run the journal sends as batches), and a
submitted ``set_meta``/``mkdir`` patches the cached view instead of dropping it (a rebuild is
O(files)). Every step compares the cached view with a full rebuild; the end reads everything
back through a second Vfs with an empty cache.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.drive.test_model_vfs import NAME, OID
from tests.drive.test_vfs_many_files import assert_views_fresh, batching_world

pytestmark = pytest.mark.timeout(300)

MTIME_NS = 1_700_000_000_123_456_789


def _path(rel: str) -> str:
    return f"/{NAME}/{rel}"


@pytest.mark.parametrize("late_chmod", [False, True])
def test_a_clone_like_copy_sends_batches_and_no_meta_op_per_file(tmp_path: Path, late_chmod: bool) -> None:
    world, api = batching_world()
    vfs, journal, cache = world.mount(tmp_path / "c1")
    journal.stop()                                   # applied in one burst at the end: the queue is inspected
    expected: dict[str, tuple[bytes, int, int]] = {}
    kept = 0
    steps = 0
    for folder in ("objects", "objects/00", "objects/01", "objects/02"):
        vfs.getattr(_path(""))
        before = vfs.ns._views.get(OID)
        vfs.mkdir(_path(folder), 0o755)
        kept += before is not None and vfs.ns._views.get(OID) is before
        steps += 1
        assert_views_fresh(vfs.ns, f"mkdir {folder}")
        for i in range(15):
            rel = f"{folder}/obj{i:03d}"
            data = f"{rel}\n".encode() * (i + 1)
            fh = vfs.create(_path(rel), 0o644)
            vfs.write(fh, 0, data)
            vfs.release(fh)
            vfs.getattr(_path(rel))                  # the view is cached before the metadata change
            before = vfs.ns._views.get(OID)
            mode = 0o444 if i % 3 == 0 else 0o644
            if late_chmod:
                vfs.utimens(_path(rel), (0, MTIME_NS + i))
                vfs.chmod(_path(rel), mode)
            else:
                vfs.chmod(_path(rel), mode)
                vfs.utimens(_path(rel), (0, MTIME_NS + i))
            kept += before is not None and vfs.ns._views.get(OID) is before
            steps += 1
            assert_views_fresh(vfs.ns, f"meta of {rel}")
            attr = vfs.getattr(_path(rel))
            assert attr.mtime == pytest.approx((MTIME_NS + i) / 1e9)
            expected[rel] = (data, mode, MTIME_NS + i)
    queued = [op.kind for op in journal.pending(OID)]
    assert "set_meta" not in queued, queued           # every chmod/utimens went with its file's upload
    assert kept == steps                              # each step patched the cached view, none dropped it
    journal.start()
    assert journal.wait_idle(120), journal.status()
    journal.stop()
    calls = [name for name, oid, _path_ in world.server.calls if oid == OID]
    assert calls.count("set_file_meta") == 0, calls
    puts = sum(len(batch) for batch in api.batches)
    assert puts == len(expected) and len(api.batches) <= 8, api.batches   # a run of uploads per folder
    assert world.server_files() == {rel: data for rel, (data, _, _) in expected.items()}
    doc = world.server.doc(OID)
    meta = {f["path"]: (f.get("mode"), f.get("mtime_ns")) for f in doc["files"] if f["kind"] == "file"}
    assert meta == {rel: (mode, mtime) for rel, (_, mode, mtime) in expected.items()}
    journal.close()
    cache.close_all()
    assert_read_back(world, tmp_path / "fresh", expected)


def assert_read_back(world: Any, cache_dir: Path, expected: dict[str, tuple[bytes, int, int]]) -> None:
    """A second Vfs with an empty cache shows each path's bytes, mode and (when not 0) mtime in ns."""
    fresh, fresh_journal, fresh_cache = world.mount(cache_dir)
    for rel, (data, mode, mtime_ns) in expected.items():
        attr = fresh.getattr(_path(rel))
        assert attr.mode & 0o777 == mode, rel
        if mtime_ns:
            assert attr.mtime == pytest.approx(mtime_ns / 1e9), rel
        fh, _ = fresh.open(_path(rel), os.O_RDONLY)
        try:
            assert fresh.read(fh, 0, len(data) + 10) == data, rel
        finally:
            fresh.release(fh)
    fresh_journal.close()
    fresh_cache.close_all()


def test_a_meta_change_after_the_upload_started_gets_its_own_op(tmp_path: Path) -> None:
    """Only a put_file that has not started takes the change; after it was applied, or with a
    newer op of the path queued (a rename), the chmod is a set_meta op of its own, in order."""
    world, _api = batching_world()
    vfs, journal, cache = world.mount(tmp_path / "c1")
    fh = vfs.create(_path("a.txt"), 0o644)
    vfs.write(fh, 0, b"one")
    vfs.release(fh)
    assert journal.wait_idle(60)
    journal.stop()
    vfs.chmod(_path("a.txt"), 0o600)                  # applied already: its own op
    fh = vfs.create(_path("b.txt"), 0o644)
    vfs.write(fh, 0, b"two")
    vfs.release(fh)
    vfs.rename(_path("b.txt"), _path("c.txt"))
    vfs.utimens(_path("c.txt"), (0, MTIME_NS))        # the move is c.txt's newest op: its own op
    assert [(op.kind, op.path) for op in journal.pending(OID)] == [
        ("set_meta", "a.txt"), ("put_file", "b.txt"), ("move", "b.txt"), ("set_meta", "c.txt")]
    assert_views_fresh(vfs.ns, "after the metadata ops")
    journal.start()
    assert journal.wait_idle(60), journal.status()
    doc = world.server.doc(OID)
    meta = {f["path"]: (f.get("mode"), f.get("mtime_ns")) for f in doc["files"] if f["kind"] == "file"}
    assert meta["a.txt"][0] == 0o600 and meta["c.txt"][1] == MTIME_NS and "b.txt" not in meta
    journal.close()
    cache.close_all()


def test_an_applied_mkdir_patches_the_cached_view(tmp_path: Path) -> None:
    """The server's answer to a mkdir (also one with files queued inside it since) patches the
    cached view like a put_file's answer does: no rebuild, and the view equals a rebuild."""
    world, _api = batching_world()
    vfs, journal, cache = world.mount(tmp_path / "c1")
    journal.stop()
    vfs.mkdir(_path("a"), 0o755)
    fh = vfs.create(_path("a/f.txt"), 0o644)          # touches a's mtime after the mkdir
    vfs.write(fh, 0, b"f")
    vfs.release(fh)
    vfs.mkdir(_path("a/b"), 0o755)
    vfs.mkdir(_path("c"), 0o755)
    vfs.getattr(_path("c"))
    before = vfs.ns._views.get(OID)
    assert before is not None
    assert_views_fresh(vfs.ns, "queued")
    for _ in range(2):                                 # applied, then nothing left to apply
        journal.start()
        assert journal.wait_idle(60)
        journal.stop()
        assert_views_fresh(vfs.ns, "applied")
    assert vfs.ns._views.get(OID) is before            # every answer patched the view, none dropped it
    assert not journal.pending(OID)
    assert vfs.getattr(_path("a/b")).mode & 0o777 == 0o755
    journal.close()
    cache.close_all()
