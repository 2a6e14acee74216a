"""The cache item's write-path state machine (oaiofs/vfs/item_state.py) and its use by Item/Cache.

Illegal transitions raise an internal error that the drive reports as EIO; a seeded random
walk of legal events on a real cache item (with hard links standing in for the journal's
snapshots) keeps the invariants the old booleans dirty/linked/detached/closed encoded.
"""
from __future__ import annotations

import errno
import hashlib
import os
import random

import pytest

from oaiofs.errors import OaioError
from oaiofs.vfs.cache import Cache
from oaiofs.vfs.errors import IllegalItemTransition
from oaiofs.vfs.item_state import (LIFE_MOVES, STATE_MOVES, ItemEvent, ItemState, Lifecycle, next_life,
                                   next_state)

MiB = 1 << 20
SEEDS = [int(s) for s in os.environ.get("OAIOFS_ITEM_STATE_SEEDS", "0 1 2 3 4 5 6 7").split()]
STEPS = int(os.environ.get("OAIOFS_ITEM_STATE_STEPS", "400"))


# --- the table ------------------------------------------------------------------------------
def test_illegal_transitions_raise_an_internal_error_mapped_to_eio():
    err = IllegalItemTransition("x")
    assert isinstance(err, OaioError) and err.errno == errno.EIO
    illegal = 0
    for event in ItemEvent:
        for state in ItemState:
            if state in STATE_MOVES.get(event, {}):
                assert next_state(state, event) is STATE_MOVES[event][state]
            else:
                illegal += 1
                with pytest.raises(IllegalItemTransition):
                    next_state(state, event)
        for life in Lifecycle:
            if life in LIFE_MOVES.get(event, {}):
                assert next_life(life, event) is LIFE_MOVES[event][life]
            else:
                with pytest.raises(IllegalItemTransition):
                    next_life(life, event)
    # the ones that matter: never write into bytes the journal holds a link to; retire once
    for state in (ItemState.SNAPSHOT, ItemState.CLEAN_LINKED):
        with pytest.raises(IllegalItemTransition):
            next_state(state, ItemEvent.WRITE)
    for life in (Lifecycle.DETACHED, Lifecycle.CLOSED, Lifecycle.GONE):
        with pytest.raises(IllegalItemTransition):
            next_life(life, ItemEvent.DETACH)
    assert illegal >= 2


def test_the_booleans_are_views_of_the_states():
    assert [s.dirty for s in ItemState] == [False, True, True, False]
    assert [s.linked for s in ItemState] == [False, False, True, True]
    assert [(life.detached, life.closed) for life in Lifecycle] == [
        (False, False), (True, False), (False, True), (True, True)]
    for event, moves in STATE_MOVES.items():          # what each event means for the booleans
        for before, after in moves.items():
            if event is ItemEvent.WRITE:
                assert after.dirty and not after.linked
            elif event is ItemEvent.SUBMIT:
                assert after.linked and after.dirty == before.dirty
            elif event is ItemEvent.UNLINK:
                assert not after.linked and after.dirty == before.dirty
            elif event is ItemEvent.COMMIT:
                assert not after.dirty and after.linked == before.linked


# --- a real item -----------------------------------------------------------------------------
def test_a_write_into_the_journals_snapshot_is_refused_before_any_byte_changes(tmp_path):
    cache = Cache(tmp_path / "c", quota_bytes=MiB)
    item = cache.create_local(("o", "f"))
    item.write(0, b"first")
    snapshot = tmp_path / "snap"
    os.link(item.data_path, snapshot)                 # what Journal.submit does
    item.submitted()
    assert item.state is ItemState.SNAPSHOT and item.linked and item.dirty
    gen = item.write_gen
    with pytest.raises(IllegalItemTransition) as caught:
        item.write(0, b"XXXXX")                       # a caller that forgot prepare_write
    assert caught.value.errno == errno.EIO
    with pytest.raises(IllegalItemTransition):
        item.truncate(0)
    assert snapshot.read_bytes() == b"first" and item.write_gen == gen and item.size == 5
    item.prepare_write()                              # copy-on-write: the legal way
    assert item.state is ItemState.DIRTY and not item.linked
    item.write(0, b"SECOND")
    assert snapshot.read_bytes() == b"first" and item.read(0, 6) == b"SECOND"
    cache.close(item)


def test_prepare_write_without_a_journal_link_ends_unlinked(tmp_path):
    """The journal dropped its link (op applied): the next prepare_write finds nlink 1 and the
    item no longer claims a link (the old boolean stayed set and fstat'ed every write)."""
    cache = Cache(tmp_path / "c", quota_bytes=MiB)
    item = cache.create_local(("o", "f"))
    item.write(0, b"abc")
    snapshot = tmp_path / "snap"
    os.link(item.data_path, snapshot)
    item.submitted()
    assert cache.mark_clean(item, 7, item.finish_hash(), item.write_gen)
    assert item.state is ItemState.CLEAN_LINKED
    snapshot.unlink()
    token = item.token
    item.prepare_write()
    assert item.state is ItemState.CLEAN and item.token == token      # nothing to copy
    cache.close(item)


def test_lifecycle_retire_once_close_idempotent(tmp_path):
    cache = Cache(tmp_path / "c", quota_bytes=MiB)
    item = cache.open(("o", "f"), version=1, sha256=None, size=0)
    cache.remove("o", "f", tree=False)                # retired while open
    assert item.detached and not item.closed and item.life is Lifecycle.DETACHED
    with pytest.raises(IllegalItemTransition), item.cond:
        item.move_locked(ItemEvent.DETACH)
    cache.close(item)                                 # last opener: files closed, bytes deleted
    assert item.detached and item.closed and not item.data_path.exists()
    item.close_fds()                                  # a late second close is a no-op
    assert item.life is Lifecycle.GONE
    live = cache.open(("o", "g"), version=1, sha256=None, size=0)
    cache.close_all()                                 # unmount: closed while live, record kept
    assert live.closed and not live.detached
    item_again_closed = live.life
    live.close_fds()
    assert live.life is item_again_closed is Lifecycle.CLOSED
    with pytest.raises(IllegalItemTransition), live.cond:
        live.move_locked(ItemEvent.DETACH)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_walk_of_legal_events_keeps_the_invariants(tmp_path, seed):
    """Events as the drive makes them (write after copy-on-write, journal snapshots as hard
    links, commits of a snapshot's write generation, the journal dropping a link, retiring),
    checked after every step against a reference: the journal's snapshots never change; the
    item claims a link whenever one exists; dirty means written since the last commit of the
    current generation; detached and closed never revert."""
    rng = random.Random(seed)
    cache = Cache(tmp_path / "c", quota_bytes=64 * MiB)
    item = cache.create_local(("o", "f"))
    content = bytearray()
    snapshots: list[tuple[os.PathLike[str], bytes, int, str]] = []   # (link, bytes, write_gen, sha)
    dirty = True                                       # a new local file
    committed_gen: int | None = None
    counts: dict[str, int] = {}
    n = 0
    for step in range(STEPS):
        event = rng.choice(["write", "write", "truncate", "submit", "commit", "journal_done", "prepare",
                            "detach"] if step > STEPS // 2 else
                           ["write", "write", "truncate", "submit", "commit", "journal_done", "prepare"])
        counts[event] = counts.get(event, 0) + 1
        if event in ("write", "truncate"):
            with item.write_lock:
                if item.linked:
                    item.prepare_write()
                if event == "write":
                    offset = rng.randrange(0, len(content) + 64)
                    data = rng.randbytes(rng.randrange(1, 200))
                    item.write(offset, data)
                    if offset > len(content):
                        content.extend(b"\0" * (offset - len(content)))
                    content[offset:offset + len(data)] = data
                else:
                    length = rng.randrange(0, len(content) + 64)
                    item.truncate(length)
                    del content[length:]
                    content.extend(b"\0" * (length - len(content)))
            dirty = True
        elif event == "submit" and item.dirty and not item.detached:
            sha = item.finish_hash()
            n += 1
            link = tmp_path / f"snap{n}"
            os.link(item.data_path, link)             # the journal's O(1) snapshot
            item.submitted()
            snapshots.append((link, bytes(content), item.write_gen, sha))
        elif event == "commit" and snapshots:
            link, data, gen, sha = snapshots[0]        # the journal applies in order
            if cache.mark_clean(item, step + 1, sha, gen):
                committed_gen = gen
                dirty = False
            elif not item.detached:
                assert item.write_gen != gen           # only a newer write keeps it dirty
        elif event == "journal_done" and snapshots:
            link, *_ = snapshots.pop(0)
            os.unlink(link)
        elif event == "prepare":
            with item.write_lock:
                item.prepare_write()
        elif event == "detach" and not item.detached:
            cache.remove("o", "f", tree=False)
        # --- invariants ---
        for link, data, _gen, _sha in snapshots:
            assert open(link, "rb").read() == data, f"seed {seed} step {step}: a snapshot changed"
        assert item.read(0, item.size + 1) == bytes(content)
        assert item.dirty == dirty
        if os.fstat(item.fd).st_nlink > 1:
            assert item.linked, f"seed {seed} step {step}: the journal holds a link the item forgot"
        if not item.dirty:
            assert item.write_gen == committed_gen and item.sha256 == hashlib.sha256(content).hexdigest()
        if item.detached:
            assert item.life in (Lifecycle.DETACHED, Lifecycle.GONE)
    detached = item.detached
    cache.close(item)
    assert item.closed and item.detached == detached
    assert counts.get("submit", 0) and counts.get("commit", 0) and counts.get("write", 0)


def _on_disk(cache_root, key):
    """The item record a new process would read from the cache's index (after a kill -9)."""
    import diskcache

    from oaiofs.vfs.cache import _record_key
    disk = diskcache.Cache(str(cache_root / "index"))
    try:
        return disk.get(_record_key(key))
    finally:
        disk.close()


def test_the_index_on_disk_says_dirty_before_a_change_lands(tmp_path):
    """What ``WriteBack.recover`` needs after a kill -9 between close(2) and the asynchronous
    release: a created file, a clean file's first write, and the first write after a copy-on-write
    leave a dirty record (no sha256) naming the data file the bytes went to."""
    root = tmp_path / "c"
    cache = Cache(root, quota_bytes=MiB)
    cache.install(("o", "clean"), _file(tmp_path / "dl", b"server bytes"), version=3, sha256="cd" * 32, size=12)
    item = cache.open(("o", "clean"), version=3, sha256="cd" * 32, size=12)
    assert _on_disk(root, ("o", "clean"))["dirty"] is False
    item.write(0, b"SERVER")
    rec = _on_disk(root, ("o", "clean"))
    assert rec["dirty"] is True and rec["sha256"] is None and rec["token"] == item.token
    snapshot = tmp_path / "snap"                       # the journal's hard link (a hand-over)
    os.link(item.data_path, snapshot)
    item.submitted()
    cache.persist(item)
    item.prepare_write()                               # copy-on-write: a new data file
    item.write(6, b"!")
    rec = _on_disk(root, ("o", "clean"))
    assert rec["dirty"] is True and rec["token"] == item.token and rec["sha256"] is None
    assert (root / "data" / rec["token"]).read_bytes() == b"SERVER!bytes"
    cache.close(item)
    new = cache.create_local(("o", "new"))             # a created file: dirty on disk at once
    assert _on_disk(root, ("o", "new"))["dirty"] is True
    cache.close(new)
    cache.close_all()


def _file(path, data):
    path.write_bytes(data)
    return path
