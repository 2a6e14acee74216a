"""The state of a cache item (:class:`~oaiofs.vfs.cache.Item`) on the write path, in one place.

Two independent axes, each an enum with its allowed transitions listed here and
nowhere else (a transition not listed raises :class:`IllegalItemTransition`, an
internal error the drive reports as ``EIO`` — never a silent pass):

**ItemState** — what the bytes are, relative to the server and the journal::

                 write                    submit (journal hard-links the file)
      CLEAN ───────────────► DIRTY ─────────────────────────────► SNAPSHOT
        ▲   ◄─── commit ──────  ▲  ◄── unlink (copy-on-write) ───   │
        │                       │                                   │ commit
        └──── unlink ─────── CLEAN_LINKED ◄─────────────────────────┘

- ``CLEAN``: the bytes present are those of the server version ``Item.version``.
- ``DIRTY``: local changes the journal holds no link to (never handed over, or written
  again after the link was broken).
- ``SNAPSHOT``: local changes the journal holds a hard link to (``WriteBack.submit_file``):
  the data file is the journal's snapshot, so the next change must copy first
  (``Item.prepare_write``: ``unlink``).
- ``CLEAN_LINKED``: the snapshot is on the server (``commit``), but the journal may still
  hold its link until it drops the op's data: the next change copies first too.

``write`` (a write or truncate) is legal only where the journal holds no link (``CLEAN``,
``DIRTY``): writing into ``SNAPSHOT``/``CLEAN_LINKED`` would change bytes the journal is
uploading. ``submit`` from ``CLEAN``/``CLEAN_LINKED`` happens when the previous snapshot
of the same bytes was committed between a release's dirty check and its hand-over; the
bytes stay clean and the journal holds one more link. ``commit`` of a clean item is the
same snapshot reported twice (pending uploads re-registered after a restart).
``unlink`` (``prepare_write``) always ends with no journal link: the file was copied, or
the journal had already let its link go.

**Lifecycle** — whether the item is the cache's item for its key::

      LIVE ──detach──► DETACHED ──close──► GONE
        └────close───► CLOSED

- ``LIVE``: the cache's item for its key.
- ``DETACHED``: retired (replaced by another version or removed while open); open handles
  finish with it, its bytes no longer count and are never uploaded.
- ``CLOSED``: its files were closed while live (last close, unmount); its record stays.
- ``GONE``: closed after it was detached; its bytes are deleted.

``close`` is idempotent (an unmount closes every item, a late release closes again); an
item is retired at most once, and never after its files were closed.

The axes are independent: a detached item keeps its bytes state (its open writers still
write, copy-on-write still protects the journal's snapshot).

Who moves what (the old booleans ``dirty``/``linked``/``detached``/``closed`` are
read-only views of these states): Vfs writes and truncates (``write``), ``WriteBack``
hands over (``submit``), ``Item.prepare_write`` copies (``unlink``), ``Cache``
commits (``commit``), retires (``detach``) and closes (``close``). Every transition
runs under ``Item.cond``.
"""
from __future__ import annotations

import enum

from .errors import IllegalItemTransition


# The members carry their booleans as plain attributes and hash by identity: the hot read and
# write paths ask ``item.dirty``/``linked``/``detached`` and make transitions on every write
# (Enum's own hash and properties are Python-level calls).

class ItemState(enum.Enum):
    """What a cache item's bytes are (see the module doc): (label, dirty, linked)."""

    CLEAN = ("clean", False, False)
    DIRTY = ("dirty", True, False)
    SNAPSHOT = ("snapshot", True, True)
    CLEAN_LINKED = ("clean_linked", False, True)

    def __init__(self, label: str, dirty: bool, linked: bool) -> None:
        self.label = label
        self.dirty = dirty          # local changes the server does not have yet
        self.linked = linked        # the journal may hold a hard link: copy before the next change

    __hash__ = object.__hash__


class Lifecycle(enum.Enum):
    """Whether a cache item is still the cache's item for its key (see the module doc):
    (label, detached, closed)."""

    LIVE = ("live", False, False)
    DETACHED = ("detached", True, False)
    CLOSED = ("closed", False, True)     # closed while live (last close, unmount): its record stays
    GONE = ("gone", True, True)          # closed after it was detached: its bytes are deleted

    def __init__(self, label: str, detached: bool, closed: bool) -> None:
        self.label = label
        self.detached = detached
        self.closed = closed

    __hash__ = object.__hash__


class ItemEvent(enum.Enum):
    WRITE = "write"          # a write or truncate landed
    SUBMIT = "submit"        # the journal hard-linked the data file (a put_file snapshot)
    UNLINK = "unlink"        # prepare_write: the journal's link was broken (copied) or is gone
    COMMIT = "commit"        # the server has these exact bytes (this write generation)
    DETACH = "detach"        # retired from the cache
    CLOSE = "close"          # its files were closed

    __hash__ = object.__hash__


_S, _L, _E = ItemState, Lifecycle, ItemEvent

STATE_MOVES: dict[ItemEvent, dict[ItemState, ItemState]] = {
    _E.WRITE: {_S.CLEAN: _S.DIRTY, _S.DIRTY: _S.DIRTY},
    _E.SUBMIT: {_S.DIRTY: _S.SNAPSHOT, _S.SNAPSHOT: _S.SNAPSHOT,
                _S.CLEAN: _S.CLEAN_LINKED, _S.CLEAN_LINKED: _S.CLEAN_LINKED},
    _E.UNLINK: {_S.SNAPSHOT: _S.DIRTY, _S.CLEAN_LINKED: _S.CLEAN, _S.DIRTY: _S.DIRTY, _S.CLEAN: _S.CLEAN},
    _E.COMMIT: {_S.DIRTY: _S.CLEAN, _S.SNAPSHOT: _S.CLEAN_LINKED,
                _S.CLEAN: _S.CLEAN, _S.CLEAN_LINKED: _S.CLEAN_LINKED},
}
LIFE_MOVES: dict[ItemEvent, dict[Lifecycle, Lifecycle]] = {
    _E.DETACH: {_L.LIVE: _L.DETACHED},
    _E.CLOSE: {_L.LIVE: _L.CLOSED, _L.DETACHED: _L.GONE, _L.CLOSED: _L.CLOSED, _L.GONE: _L.GONE},
}


def next_state(state: ItemState, event: ItemEvent) -> ItemState:
    """The bytes state after ``event``, or :class:`IllegalItemTransition`."""
    new = STATE_MOVES.get(event, {}).get(state)
    if new is None:
        raise IllegalItemTransition(f"cache item: {event.value} is not allowed in state {state.label}")
    return new


def next_life(life: Lifecycle, event: ItemEvent) -> Lifecycle:
    """The lifecycle after ``event``, or :class:`IllegalItemTransition`."""
    new = LIFE_MOVES.get(event, {}).get(life)
    if new is None:
        raise IllegalItemTransition(f"cache item: {event.value} is not allowed when {life.label}")
    return new
