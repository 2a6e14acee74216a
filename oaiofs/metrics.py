"""Prometheus metrics of a mount (``oaiofs mount --metrics-addr HOST:PORT``).

Only imported when metrics are asked for. FUSE callbacks are counted and timed by an
observer that :mod:`oaiofs.fuse_ops` calls once per request; everything else is read
at scrape time from the drive's status and the plain counters of
:mod:`oaiofs.vfs.counters`, so the read/write paths pay nothing for metrics.
"""
from __future__ import annotations

import logging
from bisect import bisect_left
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from prometheus_client.registry import Collector

from .vfs.counters import COUNTERS

log = logging.getLogger(__name__)
# FUSE requests take ~20 µs (cached read) to seconds (first read of a remote file)
FUSE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                2.5, 5.0, 10.0)


class _DriveCollector(Collector):
    """Cache, journal, transfer and online state of the drive, read when scraped."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self.status = status

    def collect(self) -> Iterator[Any]:
        counts = COUNTERS.snapshot()
        for name, key, text in (
                ("oaiofs_cache_hits", "cache_hits", "reads served from bytes already in the cache"),
                ("oaiofs_cache_misses", "cache_misses", "reads that waited for bytes from the server"),
                ("oaiofs_download_bytes", "download_bytes", "file bytes fetched from the server"),
                ("oaiofs_upload_bytes", "upload_bytes", "file bytes sent to the server (resumable uploads)")):
            yield CounterMetricFamily(name, text, value=counts[key])
        try:
            status = self.status()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the drive is shutting down
            log.debug("status for metrics failed", exc_info=True)
            return
        cache = status.get("cache", {})
        ops = status.get("ops", [])
        pending_bytes = sum(max(0, int(o.get("size") or 0) - int(o.get("offset") or 0))
                            for o in ops if o.get("kind") == "put_file")
        for name, value, text in (
                ("oaiofs_cache_used_bytes", cache.get("used_bytes", 0), "bytes in the cache"),
                ("oaiofs_cache_quota_bytes", cache.get("quota_bytes", 0), "cache quota"),
                ("oaiofs_cache_pinned", len(cache.get("pins", [])), "pinned paths"),
                ("oaiofs_journal_ops", len(ops), "changes waiting to reach the server (journal depth)"),
                ("oaiofs_journal_pending_bytes", pending_bytes, "file bytes still to upload"),
                ("oaiofs_journal_failed_ops", len(status.get("failed", [])), "changes the server refused"),
                ("oaiofs_conflicts", len(status.get("conflicts", [])), "conflict copies made by this drive"),
                ("oaiofs_online", 1 if status.get("online") else 0, "1 while the server is reachable"),
                ("oaiofs_objects", status.get("objects", 0), "objects visible in the mount")):
            yield GaugeMetricFamily(name, text, value=value)


class _FuseOpStats(Collector):
    """Per-operation count, errors and latency histogram of FUSE requests, kept in plain lists.

    :meth:`observe` runs once per FUSE request, so it is a dict lookup, a bisect and three list
    additions (no lock: a rare lost count under contention is acceptable for monitoring);
    the Prometheus families are built only when scraped."""

    def __init__(self) -> None:
        self._ops: dict[str, list[float]] = {}    # op -> [count, errors, seconds sum, bucket counts...]
        self._width = 3 + len(FUSE_BUCKETS) + 1

    def observe(self, op: str, seconds: float, failed: bool) -> None:
        row = self._ops.get(op)
        if row is None:
            row = self._ops.setdefault(op, [0.0] * self._width)
        row[0] += 1
        row[2] += seconds
        row[3 + bisect_left(FUSE_BUCKETS, seconds)] += 1
        if failed:
            row[1] += 1

    def collect(self) -> Iterator[Any]:
        ops = CounterMetricFamily("oaiofs_fuse_ops", "FUSE requests by operation", labels=["op"])
        errors = CounterMetricFamily("oaiofs_fuse_errors", "FUSE requests answered with an error", labels=["op"])
        latency = HistogramMetricFamily("oaiofs_fuse_op_seconds", "time to answer a FUSE request", labels=["op"])
        for op, row in sorted(self._ops.items()):
            row = list(row)
            ops.add_metric([op], row[0])
            errors.add_metric([op], row[1])
            cumulative, buckets = 0.0, []
            for bound, count in zip((*FUSE_BUCKETS, float("inf")), row[3:]):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            latency.add_metric([op], buckets, sum_value=row[2])
        yield ops
        yield errors
        yield latency


class MountMetrics:
    """The registry of one mount and its HTTP exporter."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()
        self.fuse = _FuseOpStats()
        self.observe_fuse_op = self.fuse.observe        # handed to the FUSE adapter
        self.registry.register(self.fuse)
        self.registry.register(_DriveCollector(status))
        self._server: Any = None

    def serve(self, host: str, port: int) -> None:
        """Start the exporter thread (raises OSError if the address cannot be bound)."""
        result = start_http_server(port, addr=host, registry=self.registry)
        self._server = result[0] if isinstance(result, tuple) else None
        log.info("metrics at http://%s:%d/metrics", host, port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
