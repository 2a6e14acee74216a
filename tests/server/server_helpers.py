"""Small helpers shared by the server tests."""
from __future__ import annotations

import uuid

from tests.conftest import PASSWORD
from oaiofs.client import ApiClient


def client(server, username: str, device: str = "dev1") -> ApiClient:
    """An ``ApiClient`` for ``username`` on ``server`` (one per device)."""
    return ApiClient(server.url, username, PASSWORD, app_id="tests", device_id=device)


def unique_id(prefix: str = "obj") -> str:
    """A fresh object id."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
