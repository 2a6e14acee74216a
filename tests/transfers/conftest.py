"""Fixtures of the transfer tests."""
from __future__ import annotations

from typing import Callable, Iterator

import pytest
from tests.conftest import PASSWORD, ServerProcess

from oaiofs.client.api import ApiClient


@pytest.fixture
def api_for(live_server: ServerProcess) -> Iterator[Callable[..., ApiClient]]:
    """``api_for(user)``: an ApiClient of ``user`` on the shared server (closed afterwards)."""
    clients: list[ApiClient] = []

    def make(user: str, server: ServerProcess | None = None) -> ApiClient:
        client = ApiClient((server or live_server).url, user, PASSWORD)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
