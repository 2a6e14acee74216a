"""Helpers for driving the unmodified seed client ``ae.oaio_client`` 0.3.19 against a test server."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import requests

from tests.conftest import PASSWORD

_devices = itertools.count(1)


def seed_client(server, user: str, root: Path, *, password: str = PASSWORD, device: str | None = None,
                storage: bool = True) -> Any:
    """A real ``OaioClient`` of ``user`` (one device = one ``client_root``), optionally with the Oaiofs storage."""
    if storage:
        import oaiofs.compat.ae_storage  # noqa: F401  (registers the csh id 'Oaiofs', as an app would)
    from ae.oaio_client import OaioClient
    root.mkdir(parents=True, exist_ok=True)
    return OaioClient(f"127.0.0.1:{server.port}", {"username": user, "password": password}, app_id="interop",
                      device_id=device or f"dev{next(_devices)}", csh_default_id="Oaiofs" if storage else "Digi",
                      client_root=str(root) + "/")


def close(*clients: Any) -> None:
    """Log the clients out now (their ``__del__`` would do it at interpreter exit, when it fails)."""
    for client in clients:
        if client.connected:
            client._request("post", "logout/")
            client.connected = False


class RawSession:
    """A plain requests session that does the client's CSRF + login dance, for hostile-input tests."""

    def __init__(self, server, headers: dict[str, str] | None = None) -> None:
        self.base = server.url + "/api/"
        self.http = requests.Session()
        self.http.headers.update(headers or {"X-OAIO-user": "b'x'", "X-OAIO-dvc": "b'd'", "X-OAIO-app": "b'a'"})

    def csrf(self, slug: str = "login/") -> str:
        res = self.http.get(self.base + slug, timeout=30)
        res.raise_for_status()
        return self.http.cookies["csrftoken"]

    def post(self, slug: str, body: Any, *, csrf: bool = True) -> requests.Response:
        headers = {"X-CSRFToken": self.http.cookies.get("csrftoken") or self.csrf()} if csrf else {}
        return self.http.post(self.base + slug, json=body, headers=headers, timeout=30)

    def get(self, slug: str) -> requests.Response:
        return self.http.get(self.base + slug, timeout=30)

    def login(self, user: str, password: str = PASSWORD) -> requests.Response:
        self.csrf()
        return self.post("login/", {"username": user, "password": password})


def object_dict(oaio_id: str, stamp: str, values: dict[str, Any], user: str, **extra: Any) -> dict[str, Any]:
    """A seed ``OaiObject`` dict as the client sends it to ``register/``."""
    return dict({"oaio_id": oaio_id, "client_stamp": stamp, "server_stamp": "", "client_values": values,
                 "server_values": {}, "csh_id": "Oaiofs", "username": user, "device_id": "d", "app_id": "a",
                 "csh_access_right": "C"}, **extra)
