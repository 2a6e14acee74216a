"""Byte progress bars that tell the truth (``oaiofs umount`` waiting for uploads, ``oaiofs pin``).

tqdm computes its rate and ETA from how ``n`` moves; the bar therefore only ever moves
forward: :meth:`ByteBar.remaining` turns "bytes still to go" (which shrinks, but also grows
when new work is queued) into a monotone count of bytes done and a total that grows with
the work, so neither the rate nor the ETA can go negative.
"""
from __future__ import annotations

import sys
from typing import Any, TextIO


class ByteBar:
    """A tqdm byte bar fed with "bytes still to go" or "bytes done so far"."""

    def __init__(self, desc: str, total: int = 0, done: int = 0, file: TextIO | None = None,
                 disable: bool = False) -> None:
        from tqdm import tqdm

        self.total = max(int(total), int(done), 0)
        self.done = max(int(done), 0)
        self._bar: Any = tqdm(total=self.total, initial=self.done, unit="B", unit_scale=True, unit_divisor=1024,
                              desc=desc, file=file or sys.stderr, disable=disable, dynamic_ncols=True,
                              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                         "[{elapsed}<{remaining}, {rate_fmt}]")

    def remaining(self, left: int, desc: str | None = None) -> None:
        """``left`` bytes still to go: what is no longer left is done (never less than before)."""
        left = max(int(left), 0)
        self.total = max(self.total, self.done + left)
        self._advance(self.total - left, desc)

    def progress(self, done: int, total: int | None = None, desc: str | None = None) -> None:
        """``done`` of ``total`` bytes (done never goes back; total only grows)."""
        if total is not None:
            self.total = max(self.total, int(total))
        self._advance(min(max(int(done), self.done), max(self.total, int(done))), desc)

    def _advance(self, done: int, desc: str | None) -> None:
        done = max(done, self.done)
        self.total = max(self.total, done)
        if self._bar.total != self.total:
            self._bar.total = self.total
        if done > self.done:
            self._bar.update(done - self.done)
            self.done = done
        if desc is not None:
            self._bar.set_description_str(desc, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()
