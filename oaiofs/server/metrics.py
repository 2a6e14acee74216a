"""Prometheus metrics of the server: ``GET /metrics`` (no auth; expose it only where scrapers reach it).

* ``oaiofs_http_requests_total{method,route,status}`` and ``oaiofs_http_request_seconds{method,route}``
  (``route`` is the route template, e.g. ``/api/v1/objects/{oaio_id}``; unknown paths are ``unmatched``)
* ``oaiofs_change_feed_waiters``, ``oaiofs_db_pool_in_use``: this process's long-polls and checked-out
  database connections (summed over live workers)
* ``oaiofs_tus_uploads_active``, ``oaiofs_tus_staged_bytes``, ``oaiofs_carts{status}``,
  ``oaiofs_blob_bytes``, ``oaiofs_blobs``, ``oaiofs_users``, ``oaiofs_objects``: read from the database
  at scrape time (the same from every process)

Several processes: ``oaiofs serve --workers N`` sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh folder
before the workers start, and every worker answers ``/metrics`` with the sum over all of them
(prometheus-client's multiprocess mode). Independent ``oaiofs serve`` processes (one per port behind a
proxy) are scraped one by one as separate targets.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any, Callable, Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import event, func, select

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
METRICS_PATH = "/metrics"


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class ServerMetrics:
    """The metric objects of one app (own registry, so several apps may live in one test process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # in multiprocess mode values live in files per pid and are collected from there
        reg = None if multiprocess() else self.registry
        self.requests = Counter("oaiofs_http_requests", "HTTP requests by route template and status",
                                ["method", "route", "status"], registry=reg)
        self.latency = Histogram("oaiofs_http_request_seconds", "time to answer an HTTP request",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=reg)
        self.in_progress = Gauge("oaiofs_http_requests_in_progress", "requests being answered",
                                 registry=reg, multiprocess_mode="livesum")
        self.waiters = Gauge("oaiofs_change_feed_waiters", "change-feed long-polls waiting",
                             registry=reg, multiprocess_mode="livesum")
        self.pool_in_use = Gauge("oaiofs_db_pool_in_use", "database connections checked out",
                                 registry=reg, multiprocess_mode="livesum")

    def exposition(self, state: Any) -> bytes:
        if multiprocess():
            from prometheus_client import multiprocess as mp

            registry = CollectorRegistry()
            mp.MultiProcessCollector(registry)
            registry.register(_DatabaseCollector(state))
            return generate_latest(registry)
        return generate_latest(self.registry)


class _DatabaseCollector(Collector):
    """Gauges read from the database when scraped."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Iterator[Any]:
        from .models import Cart, FileEntry, OaiObject, Upload, User

        try:
            with self.state.sessionmaker() as db:
                uploads, staged = db.execute(select(func.count(Upload.id), func.coalesce(func.sum(Upload.offset), 0))).one()
                carts = db.execute(select(Cart.status, func.count(Cart.id)).where(Cart.deleted.is_(None))
                                   .group_by(Cart.status)).all()
                blobs = select(FileEntry.blob_key, FileEntry.size).where(
                    FileEntry.blob_key.is_not(None)).distinct().subquery()
                blob_count, blob_bytes = db.execute(select(func.count(), func.coalesce(func.sum(blobs.c.size), 0))).one()
                users = db.scalar(select(func.count(User.id)))
                objects = db.scalar(select(func.count(OaiObject.id)))
        except Exception:  # noqa: BLE001 - a scrape must answer even when the database does not
            log.warning("database metrics unavailable", exc_info=True)
            yield GaugeMetricFamily("oaiofs_db_up", "1 if the database answered the scrape's queries", value=0)
            return
        yield GaugeMetricFamily("oaiofs_db_up", "1 if the database answered the scrape's queries", value=1)
        yield GaugeMetricFamily("oaiofs_tus_uploads_active", "tus uploads created and not finished", value=uploads)
        yield GaugeMetricFamily("oaiofs_tus_staged_bytes", "bytes received by unfinished tus uploads", value=staged)
        family = GaugeMetricFamily("oaiofs_carts", "carts (download bundles) by status", labels=["status"])
        for status, count in carts:
            family.add_metric([status], count)
        yield family
        yield GaugeMetricFamily("oaiofs_blobs", "distinct file blobs referenced by current files", value=blob_count)
        yield GaugeMetricFamily("oaiofs_blob_bytes", "bytes of the distinct blobs of current files", value=blob_bytes)
        yield GaugeMetricFamily("oaiofs_users", "user accounts", value=users)
        yield GaugeMetricFamily("oaiofs_objects", "objects (deleted ones included)", value=objects)


class RequestMetrics:
    """ASGI middleware: counts and times every HTTP request by route template and status."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_progress.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or ("unmatched" if status[0] == 404 else "other")
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status[0])).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)


def count_waiters(notifier: Any, gauge: Gauge) -> None:
    """Make ``notifier.listen`` count its listeners in ``gauge``."""
    original = notifier.listen

    @contextlib.contextmanager
    def listen() -> Iterator[Any]:
        with original() as ev:
            gauge.inc()
            try:
                yield ev
            finally:
                gauge.dec()

    notifier.listen = listen


def count_pool(engine: Any, gauge: Gauge) -> None:
    """Track checked-out connections of ``engine``'s pool in ``gauge``."""
    event.listen(engine, "checkout", lambda *_a: gauge.inc())
    event.listen(engine, "checkin", lambda *_a: gauge.dec())


def install(app: Any, state: Any) -> ServerMetrics:
    """Add the middleware, the instrumentation and ``GET /metrics`` to ``app``."""
    disable_created_metrics()
    metrics = ServerMetrics()
    if not multiprocess():
        metrics.registry.register(_DatabaseCollector(state))
    count_waiters(state.notifier, metrics.waiters)
    count_pool(state.engine, metrics.pool_in_use)
    router = APIRouter()

    @router.get(METRICS_PATH, include_in_schema=False)
    def get_metrics(request: Request) -> Response:
        return Response(metrics.exposition(request.app.state.oaiofs), media_type=CONTENT_TYPE_LATEST)

    app.include_router(router)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return metrics
