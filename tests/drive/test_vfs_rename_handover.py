"""A rename racing a file's hand-over to the journal (issue 16, found by the mount model test's long
mode): VFS-level tests (real Journal, in-memory server whose carts serve only what the server
holds at a name now, no FUSE).

The sequence the mount hit (seeds 4261, 4262): a file written with a hole (``pwrite`` past its
end) was closed; its cache item knew the written ranges but not the hole, so once the journal
committed the upload the item was clean and "incomplete". The file was renamed (over another
one) and, before the server applied the move, opened for writing (which fills an incomplete
item), truncated, or read in the hole: the drive asked the server for the new name with the
moved file's version and sha256, and the server held the old file there (``checksum mismatch``:
EIO) or nothing yet (ENOENT). A hole is zeros written here: it is never fetched.
Each test holds the server's ``move`` calls (uploads go through), does the steps, checks the
bytes, then lets the moves go and reads everything back through a second Vfs with an empty cache.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterator

import pytest

from oaiofs.vfs.journal import Journal
from oaiofs.vfs.vfs import Vfs
from tests.conftest import wait_until
from tests.drive.test_model_vfs import VfsExecutor, VfsWorld

pytestmark = pytest.mark.timeout(300)
M = "/M"
HOLE = 80


class HeldMoves:
    """Holds the journal's ``move`` calls on the server from :meth:`hold` until :meth:`release`."""

    def __init__(self, world: VfsWorld) -> None:
        self.gate = threading.Event()
        self.world = world

    def hold(self) -> "HeldMoves":
        self.world.server.on_call = lambda name: self.gate.wait(60) and None if name == "move" else None
        return self

    def release(self) -> None:
        self.world.server.on_call = None
        self.gate.set()


@pytest.fixture
def world_and_mount(tmp_path: Path) -> Iterator[tuple[VfsWorld, Vfs, Journal, HeldMoves]]:
    world = VfsWorld()
    vfs, journal, cache = world.mount(tmp_path / "c")
    moves = HeldMoves(world)
    try:
        yield world, vfs, journal, moves
    finally:
        moves.release()
        journal.close()
        cache.close_all()


def idle_and_clean(journal: Journal) -> None:
    assert journal.wait_idle(timeout=60), journal.status()
    status = journal.status()
    assert not status["conflicts"] and not status["failed"], status


def read_all(vfs, path: str) -> bytes:
    fh, _ = vfs.open(path, os.O_RDONLY)
    try:
        return vfs.read(fh, 0, vfs.getattr(path).size)
    finally:
        vfs.release(fh)


def write_with_hole(vfs, world: VfsWorld, path: str, data: bytes) -> bytes:
    """create + pwrite past the end (a hole of HOLE zeros) + release, and wait until the journal
    committed it (the cache item is clean then); returns what the file holds."""
    fh = vfs.create(path)
    vfs.write(fh, HOLE, data)
    vfs.release(fh)
    want = b"\0" * HOLE + data
    name = path.rpartition("/")[2]
    wait_until(lambda: world.server_files().get(name) == want, timeout=60, message=f"{name} uploaded")
    wait_until(lambda: not vfs.cache.peek(("model-object", name))["dirty"], timeout=60, message=f"{name} clean")
    return want


def read_back(world: VfsWorld, tmp: Path, want: dict[str, bytes]) -> None:
    """The server holds exactly ``want`` and a fresh mount (empty cache) reads it."""
    assert world.server_files() == want
    fresh = VfsExecutor(world, tmp / "fresh", 0)
    try:
        assert fresh.names() == set(want)
        for name, data in want.items():
            assert fresh.read_file(name) == data, name
    finally:
        fresh.stop()


@pytest.mark.parametrize("step", ["open_rdwr", "read_hole", "ftruncate", "fsync"])
def test_file_with_a_hole_renamed_over_another_before_the_move_is_applied(world_and_mount, tmp_path, step):
    """The seed 4261 sequence: the server still holds the old a.txt when c.bin (committed, with a
    hole) is renamed over it; every later access to a.txt is local (old code: checksum mismatch, EIO)."""
    world, vfs, journal, moves = world_and_mount
    fh = vfs.create(M + "/a.txt")
    vfs.write(fh, 0, b"the old a.txt\n")
    vfs.release(fh)
    idle_and_clean(journal)
    moves.hold()
    want = write_with_hole(vfs, world, M + "/c.bin", b"written after the hole\n")
    vfs.rename(M + "/c.bin", M + "/a.txt")
    fh, _ = vfs.open(M + "/a.txt", os.O_RDWR)         # fills the item before a write could land
    if step == "read_hole":
        assert vfs.read(fh, 0, HOLE) == b"\0" * HOLE
    elif step == "ftruncate":
        vfs.truncate(M + "/a.txt", len(want) - 3, fh)
        want = want[:-3]
    elif step == "fsync":
        vfs.write(fh, len(want), b"+")
        want += b"+"
        vfs.fsync(fh)
    vfs.release(fh)
    assert read_all(vfs, M + "/a.txt") == want
    assert world.server_files()["a.txt"] == b"the old a.txt\n"      # the move was still held
    moves.release()
    idle_and_clean(journal)
    assert read_all(vfs, M + "/a.txt") == want
    read_back(world, tmp_path, {"a.txt": want})


def test_a_hole_written_here_is_never_fetched(world_and_mount, tmp_path):
    """The root cause alone: the zeros of a hole are known locally, so reading them asks no server."""
    world, vfs, journal, moves = world_and_mount
    want = write_with_hole(vfs, world, M + "/b.log", b"tail")
    source = vfs.fetcher.source
    asked = (len(source.ranges), len(source.batches))
    assert read_all(vfs, M + "/b.log") == want
    assert (len(source.ranges), len(source.batches)) == asked
    idle_and_clean(journal)
    read_back(world, tmp_path, {"b.log": want})


def test_rename_chain_of_a_file_with_a_hole(world_and_mount, tmp_path):
    """The seed 4262 sequence: c.bin (hole) -> a.txt -> d.db while the moves are held, a new empty
    c.bin renamed onto b.log; every name reads what was last written under it (old code: ENOENT)."""
    world, vfs, journal, moves = world_and_mount
    write_with_hole(vfs, world, M + "/b.log", b"B" * 700)
    moves.hold()
    moved = write_with_hole(vfs, world, M + "/c.bin", b"C" * 1300)
    vfs.rename(M + "/c.bin", M + "/a.txt")
    assert read_all(vfs, M + "/a.txt") == moved
    fh = vfs.create(M + "/c.bin")
    vfs.fsync(fh)
    vfs.rename(M + "/a.txt", M + "/d.db")
    vfs.release(fh)
    vfs.rename(M + "/c.bin", M + "/b.log")
    assert read_all(vfs, M + "/d.db") == moved
    assert read_all(vfs, M + "/b.log") == b""
    moves.release()
    idle_and_clean(journal)
    assert read_all(vfs, M + "/d.db") == moved
    read_back(world, tmp_path, {"d.db": moved, "b.log": b""})


def test_rename_over_a_file_whose_release_is_pending(world_and_mount, tmp_path):
    """close() returns before the kernel's release: a rename over the closed file arrives while the
    drive still holds it open with unsaved writes. The name shows the renamed file at once (old
    code: the replaced file's size until its release), and that release uploads nothing."""
    world, vfs, journal, moves = world_and_mount
    fh = vfs.create(M + "/c.bin")
    vfs.write(fh, 0, b"C" * 10)
    vfs.release(fh)
    idle_and_clean(journal)
    closed = vfs.create(M + "/a.txt")                # closed, release not delivered yet
    vfs.write(closed, 0, b"A" * 50)
    vfs.rename(M + "/c.bin", M + "/a.txt")
    assert vfs.getattr(M + "/a.txt").size == 10
    assert read_all(vfs, M + "/a.txt") == b"C" * 10
    vfs.release(closed)
    assert vfs.getattr(M + "/a.txt").size == 10
    idle_and_clean(journal)
    read_back(world, tmp_path, {"a.txt": b"C" * 10})


@pytest.mark.parametrize("new_file", [True, False])
def test_late_release_of_a_replaced_file_keeps_the_open_file_renamed_over_it(world_and_mount, tmp_path, new_file):
    """Seed 4262's third shape (ENOENT on ftruncate of an open handle after a rename): s.bin, open
    with unsaved writes, is renamed over t.bin whose release is still pending; that late release
    of the replaced t.bin must not take away the overlay of s.bin, now at t.bin (old code: t.bin
    vanished, or showed its last upload's size, until s.bin was written again)."""
    world, vfs, journal, moves = world_and_mount
    if not new_file:                                 # s.bin has an upload already: a move op goes too
        fh = vfs.create(M + "/s.bin")
        vfs.write(fh, 0, b"s")
        vfs.release(fh)
        idle_and_clean(journal)
    writing, _ = vfs.open(M + "/s.bin", os.O_RDWR) if not new_file else (vfs.create(M + "/s.bin"), False)
    vfs.write(writing, 0, b"S" * 30)
    closed = vfs.create(M + "/t.bin")
    vfs.write(closed, 0, b"T" * 70)
    vfs.rename(M + "/s.bin", M + "/t.bin")
    assert vfs.getattr(M + "/t.bin").size == 30
    vfs.release(closed)                              # the replaced file's release arrives late
    assert vfs.getattr(M + "/t.bin").size == 30
    assert vfs.ns.resolve(M + "/t.bin").entry.size == 30         # the overlay, not the last upload
    assert {n for n, _ in vfs.readdir(M)} >= {"t.bin"} and "s.bin" not in {n for n, _ in vfs.readdir(M)}
    vfs.truncate(M + "/t.bin", 31, writing)
    assert vfs.getattr(M + "/t.bin").size == 31
    vfs.release(writing)
    idle_and_clean(journal)
    read_back(world, tmp_path, {"t.bin": b"S" * 30 + b"\0"})


@pytest.mark.parametrize("over", [False, True])
def test_partly_cached_file_renamed_then_read_before_the_move_is_applied(world_and_mount, tmp_path, over):
    """A file only partly cached (a reader read its start) is renamed here (over another file, or
    not) and read further before the server applied the move: the fetch waits for the move
    instead of asking the server for a name that holds other bytes or none yet (old code: EIO
    ``checksum mismatch`` or ENOENT)."""
    world, vfs, journal, moves = world_and_mount
    big = bytes(range(256)) * (12 << 10)                      # 3 MiB: above the small-file batches
    for name, data in (("big.bin", big), ("other.bin", b"other")):
        fh = vfs.create(f"{M}/{name}")
        vfs.write(fh, 0, data)
        vfs.release(fh)
    idle_and_clean(journal)
    vfs, journal, cache = world.mount(tmp_path / "second")    # a second mount: nothing cached
    try:
        entry = vfs.ns.resolve(M + "/big.bin").entry
        item = cache.open(("model-object", "big.bin"), version=entry.version, sha256=entry.sha256, size=entry.size)
        item.store(0, big[:4096])                              # what a reader of the start left
        cache.close(item)
        moves.hold()
        target = "other.bin" if over else "moved.bin"
        vfs.rename(M + "/big.bin", f"{M}/{target}")
        threading.Timer(0.5, moves.release).start()           # the server applies the move a bit later
        fh, _ = vfs.open(f"{M}/{target}", os.O_RDONLY)
        try:
            assert vfs.read(fh, 2 << 20, 4096) == big[2 << 20:(2 << 20) + 4096]
        finally:
            vfs.release(fh)
        idle_and_clean(journal)
        assert read_all(vfs, f"{M}/{target}") == big
    finally:
        journal.close()
        cache.close_all()
    read_back(world, tmp_path, {target: big} if over else {target: big, "other.bin": b"other"})


def test_reader_of_a_file_replaced_by_a_rename_reads_on_before_the_move(world_and_mount, tmp_path):
    """The other side of the wait above: a reader of a partly cached t.bin keeps its version when
    s.bin is renamed over t.bin (close-to-open). Its item is detached, not the renamed file's, so
    its stream does not wait for the move (after which the server no longer holds those bytes at
    that name): it reads on while the move is still queued."""
    world, vfs, journal, moves = world_and_mount
    big = bytes(range(256)) * (12 << 10)
    for name, data in (("t.bin", big), ("s.bin", b"s")):
        fh = vfs.create(f"{M}/{name}")
        vfs.write(fh, 0, data)
        vfs.release(fh)
    idle_and_clean(journal)
    vfs, journal, cache = world.mount(tmp_path / "second")
    try:
        entry = vfs.ns.resolve(M + "/t.bin").entry
        item = cache.open(("model-object", "t.bin"), version=entry.version, sha256=entry.sha256, size=entry.size)
        item.store(0, big[:4096])
        cache.close(item)
        reader, _ = vfs.open(M + "/t.bin", os.O_RDONLY)
        try:
            moves.hold()
            vfs.rename(M + "/s.bin", M + "/t.bin")
            timer = threading.Timer(5.0, moves.release)      # a wait for the move would outlast it
            timer.start()
            assert vfs.read(reader, 2 << 20, 4096) == big[2 << 20:(2 << 20) + 4096]
            assert moves.world.server.on_call is not None        # read before the move went through
            timer.cancel()
        finally:
            vfs.release(reader)
        moves.release()
        idle_and_clean(journal)
        assert read_all(vfs, M + "/t.bin") == b"s"
    finally:
        journal.close()
        cache.close_all()
    read_back(world, tmp_path, {"t.bin": b"s"})
