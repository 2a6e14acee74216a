"""RangeSet: a sorted set of disjoint half-open byte ranges ``[start, end)`` — pure, not thread-safe."""
from __future__ import annotations

import bisect
from typing import Iterable, Iterator


class RangeSet:
    """Which byte ranges of a sparse cache file are present."""

    __slots__ = ("_starts", "_ends")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in ranges:
            self.add(start, end)

    def add(self, start: int, end: int) -> None:
        """Insert ``[start, end)``, merging with touching or overlapping ranges."""
        if end <= start:
            return
        i = bisect.bisect_left(self._ends, start)       # first range that ends at/after start
        j = bisect.bisect_right(self._starts, end)      # ranges starting after end are untouched
        if i < j:
            start = min(start, self._starts[i])
            end = max(end, self._ends[j - 1])
        self._starts[i:j] = [start]
        self._ends[i:j] = [end]

    def remove_from(self, offset: int) -> None:
        """Forget everything at or after ``offset`` (truncate)."""
        i = bisect.bisect_left(self._ends, offset + 1)
        del self._starts[i + 1:], self._ends[i + 1:]
        if i < len(self._starts):
            if self._starts[i] >= offset:
                del self._starts[i], self._ends[i]
            else:
                self._ends[i] = offset

    def contains(self, start: int, end: int) -> bool:
        """True if all of ``[start, end)`` is present (an empty range always is)."""
        if end <= start:
            return True
        i = bisect.bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= end

    def present_end(self, offset: int) -> int:
        """The end of the present run that covers ``offset`` (``offset`` itself if absent)."""
        i = bisect.bisect_right(self._starts, offset) - 1
        if i >= 0 and self._ends[i] > offset:
            return self._ends[i]
        return offset

    def next_start(self, offset: int) -> int | None:
        """The start of the first present range beginning after ``offset``, if any."""
        i = bisect.bisect_right(self._starts, offset)
        return self._starts[i] if i < len(self._starts) else None

    def missing(self, start: int, end: int) -> list[tuple[int, int]]:
        """The absent sub-ranges of ``[start, end)``."""
        gaps: list[tuple[int, int]] = []
        pos = start
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        while pos < end and i < len(self._starts):
            s, e = self._starts[i], self._ends[i]
            if e <= pos:
                i += 1
                continue
            if s >= end:
                break
            if s > pos:
                gaps.append((pos, s))
            pos = max(pos, e)
            i += 1
        if pos < end:
            gaps.append((pos, end))
        return gaps

    def total(self) -> int:
        """Number of bytes present."""
        return sum(e - s for s, e in zip(self._starts, self._ends))

    def to_list(self) -> list[list[int]]:
        """JSON-friendly ``[[start, end], ...]``."""
        return [[s, e] for s, e in zip(self._starts, self._ends)]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self._starts, self._ends))

    def __len__(self) -> int:
        return len(self._starts)

    def __repr__(self) -> str:
        return f"RangeSet({self.to_list()})"
