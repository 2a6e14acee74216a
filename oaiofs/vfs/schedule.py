"""Which queued ops of one object may be applied at the same time (issue 16).

The journal keeps each object's ops in submit order. An op may start once it depends on no
earlier op of its object that is still queued or running (:func:`depends`). Ops that depend
on nothing still active touch disjoint parts of the object, so they can run in parallel (the
journal bounds how many per object and overall) and finish in any order: the end state is the
one of applying them one by one in submit order.

:func:`runnable` is the journal's fast form of "depends on no earlier active op": it indexes
the paths the earlier ops touch instead of comparing every pair (tests/drive/test_schedule.py
checks it against :func:`depends`). It looks at most ``lookahead`` ops into a queue, so a long
queue costs a bounded scan per pick.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Protocol, TypeVar

__all__ = ["OBJECT_LEVEL", "LOOKAHEAD", "touched", "depends", "runnable"]

OBJECT_LEVEL = ("create_object", "put_values", "delete_object")
LOOKAHEAD = 512                  # ops of one queue considered per pick


class _OpLike(Protocol):
    kind: str
    oaio_id: str
    path: str
    dst: str
    state: str


OpT = TypeVar("OpT", bound=_OpLike)


def touched(op: _OpLike) -> tuple[str, ...]:
    """The paths a file-level op reads or changes (a move: its source and its destination)."""
    return (op.path, op.dst) if op.kind == "move" else (op.path,)


def _overlap(a: str, b: str) -> bool:
    """True if path ``a`` equals ``b`` or one lies inside the other ("" is the object's root)."""
    return a == b or not a or not b or b.startswith(a + "/") or a.startswith(b + "/")


def depends(earlier: _OpLike, later: _OpLike) -> bool:
    """True if ``later`` (submitted after ``earlier``) must wait until ``earlier`` is applied.

    Ops of different objects never depend on each other. An object-level op (create_object,
    put_values, delete_object) and every other op of its object are ordered: the object exists
    before anything goes into it, its values PATCHes keep their order, and a delete comes last.
    Two file-level ops are ordered when a path one touches (its path, and a move's destination)
    equals, contains or lies inside a path the other touches: ops on one path keep journal order,
    a folder's mkdir comes before its files, a folder's move or delete waits for everything
    inside it and everything later inside it waits for the move, a move waits for ops on its
    source and destination, and a chmod or link waits for the file's upload.
    """
    if earlier.oaio_id != later.oaio_id:
        return False
    if earlier.kind in OBJECT_LEVEL or later.kind in OBJECT_LEVEL:
        return True
    return any(_overlap(a, b) for a in touched(earlier) for b in touched(later))


def _ancestors(path: str) -> Iterator[str]:
    """``path``, its parent folders, and "" (the root)."""
    yield path
    while path:
        path = path.rpartition("/")[0]
        yield path


class _Held:
    """The paths touched by earlier active ops, indexed for :func:`depends`' overlap test."""

    def __init__(self) -> None:
        self.paths: set[str] = set()      # touched paths
        self.inside: set[str] = set()     # every touched path and all its ancestors

    def add(self, op: _OpLike) -> None:
        for path in touched(op):
            self.paths.add(path)
            self.inside.update(_ancestors(path))

    def blocks(self, op: _OpLike) -> bool:
        for path in touched(op):
            if path in self.inside:       # a held path equals it or lies inside it
                return True
            if any(a in self.paths for a in _ancestors(path)):   # it lies inside a held path
                return True
        return False


def runnable(queue: Iterable[OpT], lookahead: int = LOOKAHEAD) -> Iterator[OpT]:
    """The ``pending`` ops of ``queue`` (one object's queued and running ops, in submit order)
    that depend on no earlier op of ``queue``, oldest first. They depend on none of each other."""
    held = _Held()
    for i, op in enumerate(queue):
        if i >= lookahead:
            return
        if op.kind in OBJECT_LEVEL:
            if i == 0 and op.state == "pending":
                yield op
            return                        # everything after it waits for it
        if op.state == "pending" and not held.blocks(op):
            yield op
        held.add(op)
