"""oaiofs.client: talk to an oaiofs server (``ApiClient``; more helpers are added by their modules)."""
from .api import ApiClient

__all__ = ["ApiClient"]
