"""oaiofs: a virtual drive over a server that stores and shares oaio objects.

Scripts mount with ``oaiofs.mounted(...)`` / ``oaiofs.mount(...)`` (see :mod:`oaiofs.api`).
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Mount", "MountError", "PendingChanges", "mount", "mounted", "__version__"]


def __getattr__(name: str) -> Any:
    """The mounting API, imported on first use (``oaiofs serve`` and ``oaiofs mount`` do not load it)."""
    if name in ("Mount", "MountError", "PendingChanges", "mount", "mounted"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'oaiofs' has no attribute {name!r}")
