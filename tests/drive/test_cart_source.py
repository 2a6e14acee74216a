"""CartSource over the CartReader seam (vfs/seams.py): a ranged read reuses the file version's
cart, and a cart the server let expire (404 on the member) is made again, once, before any byte."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import pytest

from oaiofs.errors import NotFound
from oaiofs.vfs.source import CartSource

DATA = bytes(range(256)) * 40


class Carts:
    """A CartReader whose carts can expire (``expire()``): then the member answers NotFound."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self.expired: set[str] = set()
        self.open_pieces = 0

    def create(self, fileids: Iterable[dict[str, Any]], uid: str | None = None) -> str:
        self.made.append(uid or f"cart{len(self.made)}")
        return self.made[-1]

    def wait(self, uid: str, timeout: float = 300.0) -> str:
        return "ready"

    def expire(self) -> None:
        self.expired.update(self.made)

    @contextlib.contextmanager
    def member_pieces(self, uid: str, path: str, start: int = 0, end: int | None = None,
                      piece_bytes: int = 1 << 20) -> Iterator[Iterator[bytes | memoryview]]:
        if uid in self.expired:
            raise NotFound(f"cart {uid} expired")
        self.open_pieces += 1
        body = DATA[start:end]
        try:
            yield iter([body[i:i + piece_bytes] for i in range(0, len(body), piece_bytes)])
        finally:
            self.open_pieces -= 1

    def fetch(self, fileids: Iterable[dict[str, Any]], dest_dir: str | os.PathLike[str],
              timeout: float = 300.0) -> list[Path]:
        raise AssertionError("not used here")


def _read(source: CartSource, start: int, end: int) -> bytes:
    with source.open_range("o1", "f.bin", 3, "ab" * 32, start, end) as pieces:
        return b"".join(bytes(p) for p in pieces)


def test_ranges_reuse_the_versions_cart_and_an_expired_cart_is_made_again() -> None:
    carts = Carts()
    source = CartSource(carts)
    assert _read(source, 0, 100) == DATA[:100]
    assert _read(source, 5000, 9000) == DATA[5000:9000]
    assert carts.made == ["cart0"]                        # one cart per file version, reused
    carts.expire()
    assert _read(source, 10, 20) == DATA[10:20]           # NotFound on entering: a fresh cart
    assert carts.made == ["cart0", "cart1"]
    assert _read(source, 30, 40) == DATA[30:40]
    assert carts.made == ["cart0", "cart1"]               # and that one is remembered
    assert carts.open_pieces == 0                         # every member stream was closed


def test_a_second_expiry_in_a_row_is_an_error_not_a_loop() -> None:
    carts = Carts()
    source = CartSource(carts)
    _read(source, 0, 1)
    real_create = carts.create

    def create_expired(fileids: Iterable[dict[str, Any]], uid: str | None = None) -> str:
        made = real_create(fileids, uid)
        carts.expired.add(made)                           # gone again before it is read
        return made

    carts.expire()
    carts.create = create_expired                         # type: ignore[method-assign]
    with pytest.raises(NotFound):
        _read(source, 0, 1)
    assert carts.open_pieces == 0
