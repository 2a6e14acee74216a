"""Plain counters of the drive's work, read by the metrics exporter (:mod:`oaiofs.metrics`).

One process-wide :data:`COUNTERS`; the hot paths only add to an int attribute (no lock,
no metrics library): two threads adding at the same instant may rarely lose one count,
which is fine for monitoring and keeps reads as cheap as before.
"""
from __future__ import annotations


class DriveCounters:
    """Monotonic counts since the process started."""

    __slots__ = ("cache_hits", "cache_misses", "download_bytes", "upload_bytes")

    def __init__(self) -> None:
        self.cache_hits = 0        # reads served from bytes already in the cache
        self.cache_misses = 0      # reads that had to wait for bytes from the server
        self.download_bytes = 0    # file bytes fetched from the server
        self.upload_bytes = 0      # file bytes sent to the server

    def snapshot(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


COUNTERS = DriveCounters()
