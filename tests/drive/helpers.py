"""Small helpers shared by the drive tests."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from oaiofs.client.api import ApiClient


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def server_file(api: ApiClient, oaio_id: str, path: str) -> dict[str, Any] | None:
    """The FileDoc of ``path`` on the server, or None."""
    doc = api.get_object(oaio_id)
    return next((f for f in doc["files"] if f["path"] == path), None)


def server_has(api: ApiClient, oaio_id: str, path: str, data: bytes) -> bool:
    """True once the server holds exactly ``data`` at ``path`` (sha256 and bytes)."""
    entry = server_file(api, oaio_id, path)
    return bool(entry and entry["sha256"] == sha256(data) and api.get_file(oaio_id, path) == data)


def mount_status(mountpoint: Path) -> dict[str, Any]:
    return json.loads(os.getxattr(mountpoint, "user.oaio.mount_status"))


def xattr(path: Path, name: str) -> str:
    return os.getxattr(path, f"user.oaio.{name}").decode()
