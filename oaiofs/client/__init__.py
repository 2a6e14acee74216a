"""oaiofs.client: talk to an oaiofs server (``ApiClient``; more helpers are added by their modules)."""
from .api import ApiClient
from .oaio_client import OaioClient

__all__ = ["ApiClient", "OaioClient"]
