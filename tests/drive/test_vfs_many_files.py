"""Issue 16 on the Vfs (no FUSE): many files created in one object, the namespace patching its cached
view instead of rebuilding it (oaiofs/vfs/view_patch.py).

A seeded generator creates, rewrites, chmods, removes and renames files across folders (some left
open for a while), applies the journal in bursts, and after every step checks that each cached
view equals a view rebuilt from scratch (the reference); at the end the in-memory server holds
exactly the reference bytes and a second Vfs with an empty cache reads them back.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from oaiofs import protocol
from oaiofs.errors import NotFound, OaioError, VersionConflict
from oaiofs.vfs.namespace import Namespace
from oaiofs.vfs.overlay import build_view
from tests.drive.test_model_vfs import NAME, OID, VfsWorld
from tests.fakeserver import FakeApi

pytestmark = pytest.mark.timeout(600)

FOLDERS = ("d0", "d1", "d2", "d2/sub", "d3")


class BatchingApi(FakeApi):
    """The in-memory server with ``commit_batch`` (per-file results, as the real endpoint answers)."""

    def __init__(self, server: Any) -> None:
        super().__init__(server)
        self.batches: list[list[str]] = []

    def commit_batch(self, oaio_id: str, files: list[protocol.BatchFile]) -> list[dict[str, Any]]:
        if self.s._enter("commit_batch", oaio_id) is None:
            raise NotFound("no object")
        self.batches.append([f.path for f in files])
        results = []
        for f in files:
            try:
                entry = self.s.commit(oaio_id, f.path, f.data, f.base_version, mode=f.mode, mtime_ns=f.mtime_ns)
                self.s.make_parents(oaio_id, f.path, entry["version"])      # as the real server does
                results.append({"path": f.path, "status": "ok", "version": entry["version"]})
            except VersionConflict as err:
                results.append({"path": f.path, "status": "conflict", "error": {"error": err.code,
                                                                                  "message": err.message}})
            except OaioError as err:
                results.append({"path": f.path, "status": "error", "error": {"error": err.code,
                                                                               "message": err.message}})
        return results


def batching_world() -> tuple[VfsWorld, BatchingApi]:
    world = VfsWorld()
    api = world.api = BatchingApi(world.server)
    return world, api


def view_state(view: Any) -> Any:
    """Everything a view shows, in comparable form."""
    if view is None:
        return None
    entries = {p: (e.kind, e.size, e.sha256, e.version, e.time_ns, e.local, e.mode, e.target)
               for p, e in view.entries.items()}
    children = {folder: sorted(names) for folder, names in view.children.items()}
    return entries, children, dict(view.subdirs), view.version, view.access_right


def assert_views_fresh(ns: Namespace, step: str) -> int:
    """Each cached view equals a rebuild; returns how many were compared."""
    compared = 0
    with ns._lock:
        for oaio_id, view in list(ns._views.items()):
            fresh = build_view(ns._docs.get(oaio_id), ns._pending_ops(oaio_id), ns._open_files.get(oaio_id, {}),
                               ns.me)
            got, want = view_state(view), view_state(fresh)
            if got != want:
                diff = {p: (got[0].get(p), want[0].get(p)) for p in set(got[0]) | set(want[0])
                        if got[0].get(p) != want[0].get(p)}
                raise AssertionError(f"{step}: the cached view of {oaio_id} is stale: entries {diff}; "
                                     f"rest equal: {got[1:] == want[1:]}")
            compared += 1
    return compared


class Writer:
    """Random bulk writes through one Vfs, with the reference of what each file should hold."""

    def __init__(self, world: VfsWorld, cache_dir: Path, seed: int) -> None:
        self.rng = random.Random(seed)
        self.vfs, self.journal, self.cache = world.mount(cache_dir)
        self.journal.stop()                     # applied in bursts: views compared while nothing moves
        self.ref: dict[str, bytes] = {}
        self.open: dict[str, tuple[int, bytes]] = {}     # path -> (fh, bytes written so far)
        self.counter = 0

    def path(self, rel: str) -> str:
        return f"/{NAME}/{rel}"

    def step(self) -> str:
        rng = self.rng
        roll = rng.random()
        if self.open and (roll < 0.25 or len(self.open) > 3):
            rel = rng.choice(sorted(self.open))
            fh, data = self.open.pop(rel)
            self.vfs.release(fh)
            self.ref[rel] = data
            return f"release {rel}"
        if roll < 0.55 or not self.ref:
            folder = rng.choice(FOLDERS)
            self.counter += 1
            rel = f"{folder}/f{self.counter:04d}.txt"
            data = f"{rel} {rng.random()}\n".encode() * rng.randint(1, 40)
            try:
                self.vfs.getattr(self.path(rel))
            except NotFound:
                pass
            fh = self.vfs.create(self.path(rel), 0o640 if rng.random() < 0.2 else 0o644)
            self.vfs.write(fh, 0, data)
            if rng.random() < 0.3:
                self.open[rel] = (fh, data)          # left open for a few steps
                return f"create-open {rel}"
            self.vfs.release(fh)
            self.ref[rel] = data
            return f"create {rel}"
        rel = rng.choice(sorted(set(self.ref) - set(self.open)) or [""])
        if not rel:
            return "nothing"
        if roll < 0.75:
            data = f"rewrite {rng.random()}\n".encode() * rng.randint(1, 20)
            fh, _ = self.vfs.open(self.path(rel), os.O_RDWR)
            self.vfs.truncate(self.path(rel), 0, fh)
            self.vfs.write(fh, 0, data)
            self.vfs.release(fh)
            self.ref[rel] = data
            return f"rewrite {rel}"
        if roll < 0.83:
            self.vfs.chmod(self.path(rel), 0o600)
            return f"chmod {rel}"
        if roll < 0.91:
            self.vfs.unlink(self.path(rel))
            del self.ref[rel]
            return f"unlink {rel}"
        new = f"{rng.choice(FOLDERS)}/moved-{rel.rpartition('/')[2]}"
        if new in self.ref or new in self.open:
            return "nothing"
        self.vfs.rename(self.path(rel), self.path(new))
        self.ref[new] = self.ref.pop(rel)
        return f"rename {rel} {new}"

    def apply_all(self) -> None:
        self.journal.start()
        assert self.journal.wait_idle(120), self.journal.status()
        self.journal.stop()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cached_views_equal_rebuilt_views_in_random_bulk_writes(tmp_path: Path, seed: int) -> None:
    world, api = batching_world()
    writer = Writer(world, tmp_path / "c1", seed)
    vfs = writer.vfs
    for folder in FOLDERS:
        vfs.mkdir(writer.path(folder), 0o755)
    writer.apply_all()
    compared = patched = 0
    for i in range(300):
        vfs.getattr(writer.path(FOLDERS[0]))          # the view is cached before each step
        before = vfs.ns._views.get(OID)
        step = writer.step()
        patched += before is not None and vfs.ns._views.get(OID) is before    # kept (patched), not dropped
        compared += assert_views_fresh(vfs.ns, f"seed {seed} step {i} ({step})")
        if writer.rng.random() < 0.08:
            writer.apply_all()
            compared += assert_views_fresh(vfs.ns, f"seed {seed} after applying (step {i})")
    for rel, (fh, data) in sorted(writer.open.items()):
        vfs.release(fh)
        writer.ref[rel] = data
    writer.apply_all()
    assert patched > 100 and compared >= patched    # many steps patched the cached view, each was checked
    assert_views_fresh(vfs.ns, "end")
    assert writer.journal.status()["conflicts"] == []
    assert world.server_files() == writer.ref
    assert any(len(batch) > 1 for batch in api.batches)      # queued small files went in batches
    writer.journal.close()
    writer.cache.close_all()
    fresh = Writer(world, tmp_path / "fresh", seed)           # a second mount with an empty cache
    for rel, data in writer.ref.items():
        fh, _ = fresh.vfs.open(fresh.path(rel), os.O_RDONLY)
        try:
            assert fresh.vfs.read(fh, 0, len(data) + 10) == data, rel
        finally:
            fresh.vfs.release(fh)
    fresh.journal.close()
    fresh.cache.close_all()


def test_a_stale_file_in_a_batch_makes_a_conflict_copy_of_that_file_only(tmp_path: Path) -> None:
    world, api = batching_world()
    writer = Writer(world, tmp_path / "c1", 7)
    vfs = writer.vfs
    vfs.mkdir(writer.path("d0"), 0o755)
    fh = vfs.create(writer.path("d0/shared.txt"))
    vfs.write(fh, 0, b"first\n")
    vfs.release(fh)
    writer.apply_all()
    base = next(f["version"] for f in world.server.doc(OID)["files"] if f["path"] == "d0/shared.txt")
    world.server.commit(OID, "d0/shared.txt", b"theirs\n", base)          # another writer, meanwhile
    ref = {}
    for i in range(30):
        rel = f"d0/new{i:02d}.txt"
        if i == 15:                          # our rewrite of the file, based on the old version
            fh, _ = vfs.open(writer.path("d0/shared.txt"), os.O_RDWR)
            vfs.truncate(writer.path("d0/shared.txt"), 0, fh)
            vfs.write(fh, 0, b"mine\n")
            vfs.release(fh)
        fh = vfs.create(writer.path(rel))
        vfs.write(fh, 0, f"{i}\n".encode() * 100)
        vfs.release(fh)
        ref[rel] = f"{i}\n".encode() * 100
    writer.apply_all()
    stored = world.server_files()
    assert any("d0/shared.txt" in batch and len(batch) > 1 for batch in api.batches)
    assert stored["d0/shared.txt"] == b"theirs\n"                # the server's version keeps the name
    copies = [p for p in stored if p.startswith("d0/shared") and p != "d0/shared.txt"]
    assert len(copies) == 1 and stored[copies[0]] == b"mine\n"  # ours went to a conflict copy
    assert {p: stored[p] for p in ref} == ref                    # every other file of the batch is stored
    conflicts = writer.journal.status()["conflicts"]
    assert [c["path"] for c in conflicts] == ["d0/shared.txt"]
    assert set(stored) == set(ref) | {"d0/shared.txt", copies[0]}
    writer.journal.close()
    writer.cache.close_all()
    fresh = Writer(world, tmp_path / "fresh", 8)                 # a second mount with an empty cache
    for rel, data in {**ref, "d0/shared.txt": b"theirs\n", copies[0]: b"mine\n"}.items():
        fh, _ = fresh.vfs.open(fresh.path(rel), os.O_RDONLY)
        try:
            assert fresh.vfs.read(fh, 0, len(data) + 10) == data, rel
        finally:
            fresh.vfs.release(fh)
    fresh.journal.close()
    fresh.cache.close_all()
