"""Compatibility layer for the unmodified ``ae.oaio_client`` (seed 001) at ``<root>/api/``.

Same services, rights and database as ``/api/v1``: objects made here are
ordinary oaiofs objects. ``routers`` are registered by :func:`oaiofs.server.app.create_app`.
"""
from __future__ import annotations

from .routes import router as api_router
from .storage import router as storage_router

routers = [storage_router, api_router]
