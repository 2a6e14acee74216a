"""Prometheus metrics of a mount (``oaiofs mount --metrics-addr HOST:PORT``).

Only imported when metrics are asked for. FUSE callbacks are counted and timed by an
observer that :mod:`oaiofs.fuse_ops` calls once per request; everything else is read
at scrape time from the drive's status and the plain counters of
:mod:`oaiofs.vfs.counters`, so the read/write paths pay nothing for metrics.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
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


class MountMetrics:
    """The registry of one mount and its HTTP exporter."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        disable_created_metrics()
        self.registry = CollectorRegistry()
        self.ops = Counter("oaiofs_fuse_ops", "FUSE requests by operation", ["op"], registry=self.registry)
        self.errors = Counter("oaiofs_fuse_errors", "FUSE requests answered with an error", ["op"],
                              registry=self.registry)
        self.latency = Histogram("oaiofs_fuse_op_seconds", "time to answer a FUSE request", ["op"],
                                 buckets=FUSE_BUCKETS, registry=self.registry)
        self.registry.register(_DriveCollector(status))
        self._children: dict[str, tuple[Any, Any]] = {}
        self._server: Any = None

    def observe_fuse_op(self, op: str, seconds: float, failed: bool) -> None:
        """Called by the FUSE adapter after each request (cached per-op children: one dict lookup)."""
        children = self._children.get(op)
        if children is None:
            children = self._children.setdefault(op, (self.ops.labels(op), self.latency.labels(op)))
        children[0].inc()
        children[1].observe(seconds)
        if failed:
            self.errors.labels(op).inc()

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
