"""Issue 16: a real Drive's journal applies independent ops of one object in parallel.

A seeded generator creates, rewrites, chmods, renames and deletes many files and folders (folder
renames and ``rm -r`` included, small files and files big enough for tus) in two object folders,
through the Vfs of a real Drive against a real server; half of it while the journal is stopped,
so many ops are queued when the workers start. Every attempt the journal makes is recorded: no op
may start before an earlier op it depends on (oaiofs/vfs/schedule.py) has finished, and some ops
of one object must have run at the same time. At the end a second Drive with an empty cache reads
both trees back and they equal the reference dict.
"""
from __future__ import annotations

import itertools
import os
import random
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

import oaiofs.vfs.journal as journal_mod
from oaiofs.vfs.opstore import Op
from oaiofs.vfs.schedule import depends
from tests.conftest import ServerProcess
from tests.scenarios.adaptors import VfsFs
from tests.scenarios.scenarios import Dir, File, Tree, differences, read_tree, write_file

pytestmark = pytest.mark.timeout(900)

SEED = int(os.environ.get("OAIOFS_PARALLEL_SEED", "1600"))
STEPS = int(os.environ.get("OAIOFS_PARALLEL_STEPS", "160"))      # per phase


class Attempts:
    """Each time the journal applies an op (alone or in a batch): (op copy, start tick, end tick)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tick = itertools.count()
        self.rows: list[tuple[Op, int, int]] = []

    def wrap(self, fn: Callable[..., Any], ops_of: Callable[..., list[Op]]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            ops = [Op(o.kind, o.oaio_id, o.path, o.dst, id=o.id) for o in ops_of(*args)]
            with self.lock:
                start = next(self.tick)
            try:
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    end = next(self.tick)
                    self.rows += [(op, start, end) for op in ops]
        return wrapped

    def check_order(self) -> int:
        """Assert no op started before an earlier op it depends on had finished its last attempt;
        returns the most attempts of one object that overlapped."""
        first_start: dict[int, int] = {}
        last_end: dict[int, int] = {}
        ops: dict[int, Op] = {}
        for op, start, end in self.rows:
            ops[op.id] = op
            first_start[op.id] = min(start, first_start.get(op.id, start))
            last_end[op.id] = max(end, last_end.get(op.id, end))
        ordered = sorted(ops.values(), key=lambda o: o.id)
        for i, later in enumerate(ordered):
            for earlier in ordered[:i]:
                if depends(earlier, later):
                    assert last_end[earlier.id] < first_start[later.id], (earlier, later)
        most = 0
        for op, start, end in self.rows:
            overlapping = {o.id for o, s, e in self.rows if o.oaio_id == op.oaio_id and s < end and start < e}
            most = max(most, len(overlapping))
        return most


def _steps(fs: VfsFs, rng: random.Random, roots: list[str], ref: dict[str, dict[str, bytes]],
           folders: dict[str, list[str]], modes: dict[str, dict[str, int]], count: int) -> None:
    for _ in range(count):
        root = rng.choice(roots)
        files, dirs = ref[root], folders[root]
        action = rng.choice(["create"] * 5 + ["overwrite", "chmod", "mkdir", "rename", "rename_dir", "unlink",
                                               "rm_r"])
        folder = rng.choice(dirs)
        name = f"{folder}/f{rng.randrange(12)}" if folder else f"f{rng.randrange(12)}"
        if action in ("create", "overwrite") and name not in dirs:
            if action == "overwrite" and files:
                name = rng.choice(sorted(files))
            big = rng.random() < 0.06
            data = rng.randbytes(rng.randrange(300_000, 700_000) if big else rng.randrange(0, 6000))
            write_file(fs, f"{root}/{name}", data)
            files[name] = data
        elif action == "chmod" and files:
            name = rng.choice(sorted(files))
            mode = rng.choice([0o600, 0o644, 0o755])
            fs.chmod(f"{root}/{name}", mode)
            modes[root][name] = mode
        elif action == "mkdir" and len(dirs) < 12:
            new = f"{folder}/d{rng.randrange(100)}" if folder else f"d{rng.randrange(100)}"
            if new not in dirs and new not in files:
                fs.mkdir(f"{root}/{new}")
                dirs.append(new)
        elif action == "rename" and files:
            src = rng.choice(sorted(files))
            dst = f"{folder}/r{rng.randrange(6)}" if folder else f"r{rng.randrange(6)}"
            if dst != src and dst not in dirs:
                fs.rename(f"{root}/{src}", f"{root}/{dst}")
                files[dst] = files.pop(src)
                if src in modes[root]:
                    modes[root][dst] = modes[root].pop(src)
                else:
                    modes[root].pop(dst, None)
        elif action == "rename_dir" and folder:
            parent = rng.choice([d for d in dirs if d != folder and not d.startswith(folder + "/")])
            dst = f"{parent}/m{rng.randrange(100)}" if parent else f"m{rng.randrange(100)}"
            if dst not in dirs and dst not in files:
                fs.rename(f"{root}/{folder}", f"{root}/{dst}")
                moved = lambda p: dst + p[len(folder):] if p == folder or p.startswith(folder + "/") else p  # noqa: E731
                ref[root] = {moved(p): d for p, d in files.items()}
                modes[root] = {moved(p): m for p, m in modes[root].items()}
                folders[root] = [moved(d) for d in dirs]
        elif action == "unlink" and files:
            name = rng.choice(sorted(files))
            fs.unlink(f"{root}/{name}")
            del files[name]
            modes[root].pop(name, None)
        elif action == "rm_r" and folder and rng.random() < 0.5:
            inside = lambda p: p == folder or p.startswith(folder + "/")  # noqa: E731
            for path in sorted((p for p in files if inside(p)), reverse=True):
                fs.unlink(f"{root}/{path}")
                del files[path]
                modes[root].pop(path, None)
            for d in sorted((d for d in dirs if inside(d)), key=len, reverse=True):
                fs.rmdir(f"{root}/{d}")
                dirs.remove(d)


def _tree(files: dict[str, bytes], dirs: list[str], modes: dict[str, int]) -> Tree:
    tree: Tree = {d: Dir() for d in dirs if d}
    tree.update({p: File(data, modes.get(p)) for p, data in files.items()})
    return tree


def test_parallel_uploads_keep_every_dependency_and_lose_nothing(live_server: ServerProcess, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAIOFS_UPLOAD_PARALLEL", "4")   # parallel is opt-in (journal.DEFAULT_PER_OBJECT)
    attempts = Attempts()
    monkeypatch.setattr(journal_mod, "apply_batch",
                        attempts.wrap(journal_mod.apply_batch, lambda api, ops, doc_of: list(ops)))
    user = live_server.add_user(f"par-{uuid.uuid4().hex[:6]}")
    fs = VfsFs(live_server, user, tmp_path / "drive1" / "cache")
    applier = fs.drive.journal._applier
    applier.apply = attempts.wrap(applier.apply, lambda op: [op])          # type: ignore[method-assign]
    rng = random.Random(SEED)
    roots = ["par-one", "par-two"]
    ref: dict[str, dict[str, bytes]] = {r: {} for r in roots}
    folders: dict[str, list[str]] = {r: [""] for r in roots}
    modes: dict[str, dict[str, int]] = {r: {} for r in roots}
    try:
        for root in roots:
            fs.mkdir(root)
        _steps(fs, rng, roots, ref, folders, modes, STEPS)                 # the journal running
        fs.settle()
        fs.drive.journal.stop()                                           # many ops queued, then started
        _steps(fs, rng, roots, ref, folders, modes, STEPS)
        fs.drive.journal.start()
        fs.settle()
        for root in roots:
            want = _tree(ref[root], folders[root], modes[root])
            assert not differences(want, read_tree(fs, root)), differences(want, read_tree(fs, root))
    finally:
        fs.stop()
    most = attempts.check_order()
    assert most >= 2, "no two ops of one object ever ran at the same time"
    fresh = VfsFs(live_server, user, tmp_path / "drive2" / "cache")
    try:
        problems = {root: differences(_tree(ref[root], folders[root], modes[root]), read_tree(fresh, root))
                    for root in roots}
    finally:
        fresh.stop()
    assert not any(problems.values()), problems
