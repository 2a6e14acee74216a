"""Small helpers shared by the drive tests."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
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


def oaiofs(*args: str, password: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the ``oaiofs`` command line (password only from ``password``); ``check`` raises on a non-zero exit."""
    env = {k: v for k, v in os.environ.items() if k != "OAIOFS_PASSWORD"}
    if password is not None:
        env["OAIOFS_PASSWORD"] = password
    result = subprocess.run([sys.executable, "-m", "oaiofs", *args], capture_output=True, text=True, env=env,
                            stdin=subprocess.DEVNULL, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"oaiofs {' '.join(args)} -> {result.returncode}: {result.stderr}{result.stdout}")
    return result


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (relative path -> bytes)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


def git(cwd: Path, *args: str) -> str:
    """``git ARGS`` in ``cwd`` with a fixed identity and no system or user configuration."""
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.invalid", HOME=str(cwd), GIT_CONFIG_NOSYSTEM="1")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout
