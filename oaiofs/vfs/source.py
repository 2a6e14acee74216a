"""CartSource: the drive's :class:`~oaiofs.vfs.fetcher.ByteSource` over server carts.

A ranged read of one file goes through a one-file cart (made once per file
version and reused for later seeks) and its single-member endpoint with
``Range``; a batch of small files is one cart downloaded as one tar stream
(``CartDownloader.fetch``). Carts pin the blob they were made for, so a stream
never mixes two versions of a file.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Iterator

import cachetools

from ..client.carts import cart_entry
from ..errors import NotFound
from .cache import ItemKey
from .fetcher import Candidate
from .seams import CartReader

log = logging.getLogger(__name__)

STREAM_PIECE_BYTES = 1 << 20
CART_MEMO_SIZE = 512
CART_MEMO_TTL_S = 600.0          # well under the server's cart TTL
MEMBER = "f"                     # bundle path of the single member of a one-file cart


class CartSource:
    """File bytes from the server, always through carts."""

    def __init__(self, carts: CartReader) -> None:
        self.carts = carts
        self._uids: cachetools.TTLCache[tuple[str, str, int], str] = cachetools.TTLCache(
            CART_MEMO_SIZE, CART_MEMO_TTL_S)
        self._lock = threading.Lock()

    def _cart_for(self, oaio_id: str, path: str, version: int, sha: str, fresh: bool = False) -> str:
        key = (oaio_id, path, version)
        with self._lock:
            uid = None if fresh else self._uids.get(key)
        if uid is None:
            uid = self.carts.create([cart_entry(oaio_id, path, sha, MEMBER)])
            self.carts.wait(uid)
            with self._lock:
                self._uids[key] = uid
        return uid

    @contextlib.contextmanager
    def open_range(self, oaio_id: str, path: str, version: int, sha256: str | None, start: int,
                   end: int) -> Iterator[Iterator[bytes | memoryview]]:
        uid = self._cart_for(oaio_id, path, version, sha256 or "")
        with contextlib.ExitStack() as stack:
            try:
                pieces = stack.enter_context(self.carts.member_pieces(uid, MEMBER, start, end, STREAM_PIECE_BYTES))
            except NotFound:                   # the cart expired on the server: make a new one
                uid = self._cart_for(oaio_id, path, version, sha256 or "", fresh=True)
                pieces = stack.enter_context(self.carts.member_pieces(uid, MEMBER, start, end, STREAM_PIECE_BYTES))
            yield pieces

    def fetch_batch(self, files: list[Candidate], dest_dir: Path) -> dict[ItemKey, Path]:
        entries, names = [], {}
        for i, cand in enumerate(files):
            if not cand.sha256:
                continue
            name = f"b{i:06d}"
            entries.append(cart_entry(cand.key[0], cand.key[1], cand.sha256, name))
            names[name] = cand.key
        if not entries:
            return {}
        written = self.carts.fetch(entries, dest_dir)
        out: dict[ItemKey, Path] = {}
        for file in written:
            key = names.get(file.name)
            if key is not None:
                out[key] = file
        return out
