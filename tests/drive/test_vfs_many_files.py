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

from oaiofs.errors import NotFound
from oaiofs.vfs.namespace import Namespace
from oaiofs.vfs.overlay import build_view
from tests.drive.test_model_vfs import NAME, OID, VfsWorld

pytestmark = pytest.mark.timeout(600)

FOLDERS = ("d0", "d1", "d2", "d2/sub", "d3")


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
    world = VfsWorld()
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
