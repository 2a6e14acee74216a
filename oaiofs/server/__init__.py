"""oaiofs.server: the FastAPI server (``create_app``) and its services."""
from __future__ import annotations

from typing import Any


def create_app(settings: Any = None) -> Any:
    """Build the ASGI app (see :func:`oaiofs.server.app.create_app`); imported lazily."""
    from .app import create_app as _create_app
    return _create_app(settings)


__all__ = ["create_app"]
