"""Small helpers shared by the server tests."""
from __future__ import annotations

import uuid
from typing import Callable, NamedTuple

from tests.conftest import PASSWORD
from oaiofs.client import ApiClient


def client(server, username: str, device: str = "dev1") -> ApiClient:
    """An ``ApiClient`` for ``username`` on ``server`` (one per device)."""
    return ApiClient(server.url, username, PASSWORD, app_id="tests", device_id=device)


def unique_id(prefix: str = "obj") -> str:
    """A fresh object id."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Shared(NamedTuple):
    """An object ``alice`` made and shared with ``bob`` (right ``U``), and bob's feed cursor after it."""

    a: ApiClient
    b: ApiClient
    alice: str
    bob: str
    oaio_id: str
    cursor: int


def shared_with_bob(server, make_user: Callable[[str], str]) -> Shared:
    """Two users and a shared object; bob's feed starts after the sharing."""
    alice, bob = make_user("alice"), make_user("bob")
    a, b = client(server, alice), client(server, bob)
    oaio_id = a.create_object({}, unique_id())["oaio_id"]
    a.set_subscription(oaio_id, bob, "U")
    _, cursor = b.list_objects()
    return Shared(a, b, alice, bob, oaio_id, cursor)
