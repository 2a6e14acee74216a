"""The journal's dependency rule (oaiofs/vfs/schedule.py) against brute-force references, on
seeded random op sequences: pairwise rule, the indexed ``runnable`` scan, and a simulated
parallel run whose end state must equal applying the ops one by one in journal order."""
from __future__ import annotations

import hashlib
import os
import random

import pytest

from oaiofs.vfs.opstore import Op
from oaiofs.vfs.schedule import OBJECT_LEVEL, depends, runnable

SEEDS = range(int(os.environ.get("OAIOFS_SCHEDULE_SEED", "0")),
              int(os.environ.get("OAIOFS_SCHEDULE_SEED", "0")) + int(os.environ.get("OAIOFS_SCHEDULE_SEEDS", "40")))
NAMES = ["a", "b", "c", "a b", "ab"]          # "ab" vs "a": a shared prefix is not a parent


def _path(rng: random.Random) -> str:
    return "/".join(rng.choice(NAMES) for _ in range(rng.randint(1, 3)))


def random_ops(rng: random.Random, count: int, objects: tuple[str, ...] = ("o1", "o2")) -> list[Op]:
    kinds = ["put_file"] * 6 + ["mkdir", "delete_path", "move", "move", "set_meta", "symlink",
                                  "put_values", "create_object", "delete_object"]
    ops = []
    for i in range(count):
        kind = rng.choice(kinds)
        op = Op(kind, rng.choice(objects), "" if kind in OBJECT_LEVEL else _path(rng))
        if kind == "move":
            op.dst = _path(rng)
        op.id = i + 1
        ops.append(op)
    return ops


def reference_depends(earlier: Op, later: Op) -> bool:
    """Brute force: the paths as component tuples; any two ops touching overlapping paths (one a
    prefix of the other, by whole components) are ordered; object-level ops order everything."""
    if earlier.oaio_id != later.oaio_id:
        return False
    if earlier.kind in OBJECT_LEVEL or later.kind in OBJECT_LEVEL:
        return True

    def parts(op: Op) -> list[tuple[str, ...]]:
        paths = [op.path] + ([op.dst] if op.kind == "move" else [])
        return [tuple(p.split("/")) if p else () for p in paths]
    return any(a[:len(b)] == b or b[:len(a)] == a for a in parts(earlier) for b in parts(later))


@pytest.mark.parametrize("seed", SEEDS)
def test_depends_matches_the_brute_force_reference(seed):
    rng = random.Random(seed)
    ops = random_ops(rng, 60)
    for i, later in enumerate(ops):
        for earlier in ops[:i]:
            assert depends(earlier, later) == reference_depends(earlier, later), (earlier, later)


def test_depends_named_cases():
    o = "o1"
    assert depends(Op("mkdir", o, "src"), Op("put_file", o, "src/x"))             # mkdir before its files
    assert depends(Op("put_file", o, "src/x"), Op("move", o, "src", dst="dst"))  # folder move after its files
    assert depends(Op("move", o, "src", dst="dst"), Op("put_file", o, "dst/x"))  # ... and before files at dst
    assert depends(Op("put_file", o, "f"), Op("set_meta", o, "f"))              # chmod after the upload
    assert depends(Op("put_file", o, "f"), Op("move", o, "g", dst="f"))         # move onto another op's path
    assert depends(Op("delete_path", o, "d"), Op("mkdir", o, "d/e"))
    assert depends(Op("put_file", o, "x"), Op("put_values", o))                # values: after everything
    assert not depends(Op("put_file", o, "a/x"), Op("put_file", o, "a/y"))      # siblings: parallel
    assert not depends(Op("put_file", o, "ab"), Op("put_file", o, "a"))         # a prefix, not a parent
    assert not depends(Op("put_file", o, "x"), Op("put_file", "o2", "x"))       # other object
    assert not depends(Op("move", o, "a", dst="b"), Op("put_file", o, "c/d"))


@pytest.mark.parametrize("seed", SEEDS)
def test_runnable_is_the_pending_ops_depending_on_no_earlier_op(seed):
    rng = random.Random(seed)
    for _ in range(20):
        queue = [op for op in random_ops(rng, rng.randint(0, 40), ("o1",))]
        for op in queue:
            op.state = rng.choice(["pending", "pending", "running"])
        expected = [op.id for i, op in enumerate(queue)
                    if op.state == "pending" and not any(reference_depends(e, op) for e in queue[:i])]
        assert [op.id for op in runnable(queue)] == expected


def apply_model(fs: dict[str, str], op: Op) -> None:
    """A tiny path model of what each op does on the server (folders are entries "dir")."""
    def subtree(p: str) -> list[str]:
        return [k for k in fs if k == p or k.startswith(p + "/")]
    if op.kind in ("put_file", "symlink", "set_meta"):
        fs[op.path] = f"{op.kind}:{op.id}:{fs.get(op.path, '')}"
    elif op.kind == "mkdir":
        fs.setdefault(op.path, "dir")
    elif op.kind == "delete_path":
        for k in subtree(op.path):
            del fs[k]
    elif op.kind == "move":
        if op.dst == op.path or op.dst.startswith(op.path + "/"):
            return
        for k in subtree(op.dst):
            del fs[k]
        for k in subtree(op.path):
            fs[op.dst + k[len(op.path):]] = fs.pop(k)
    else:                                                          # object-level: sees everything
        seen = hashlib.sha256(repr(sorted(fs.items())).encode()).hexdigest()[:16]
        fs[f"#{op.kind}"] = f"{op.id}:{seen}"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_simulated_parallel_run_ends_as_the_sequential_one(seed):
    """Workers take runnable ops (random choice, random finishing order, at most 4 at once);
    each op acts at a random moment while it runs. The end state equals the journal-order run,
    and no two dependent ops ever ran at the same time or out of order."""
    rng = random.Random(seed)
    ops = random_ops(rng, 80, ("o1",))
    sequential: dict[str, str] = {}
    for op in ops:
        apply_model(sequential, op)
    queue = list(ops)
    for op in queue:
        op.state = "pending"
    fs: dict[str, str] = {}
    running: list[Op] = []
    finished: set[int] = set()
    while queue:
        ready = list(runnable(queue))
        if ready and len(running) < 4 and (not running or rng.random() < 0.6):
            op = rng.choice(ready)
            op.state = "running"
            for earlier in ops[:ops.index(op)]:
                if depends(earlier, op):
                    assert earlier.id in finished, (earlier, op)
            running.append(op)
            continue
        op = running.pop(rng.randrange(len(running)))
        apply_model(fs, op)
        finished.add(op.id)
        queue.remove(op)
    assert fs == sequential
