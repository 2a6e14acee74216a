"""Helpers for the transfer tests: tus requests, sessions, random files."""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import uuid
from pathlib import Path

import requests

from oaiofs import protocol

from tests.conftest import PASSWORD

TUS = {"Tus-Resumable": protocol.TUS_VERSION}


def new_id(prefix: str = "obj") -> str:
    """A fresh object id."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def basic_session(user: str) -> requests.Session:
    """A plain requests session with HTTP Basic auth (what tus/cartd clients use)."""
    session = requests.Session()
    session.auth = (user, PASSWORD)
    return session


def tus_create(session: requests.Session, base: str, oaio_id: str, path: str, length: int,
               **meta: str) -> requests.Response:
    """POST a tus creation request."""
    metadata = {protocol.META_OAIO_ID: oaio_id, protocol.META_PATH: path, **meta}
    return session.post(base + protocol.PATH_UPLOADS, headers=dict(TUS, **{
        "Upload-Length": str(length), "Upload-Metadata": protocol.encode_upload_metadata(metadata)}))


def tus_patch(session: requests.Session, url: str, offset: int, data: bytes,
              checksum: str | None = None) -> requests.Response:
    """PATCH one chunk."""
    headers = dict(TUS, **{"Upload-Offset": str(offset), "Content-Type": protocol.TUS_CONTENT_TYPE})
    if checksum:
        headers["Upload-Checksum"] = checksum
    return session.patch(url, data=data, headers=headers)


def cut_patch(port: int, user: str, path: str, data: bytes, sent: int, headers: dict[str, str] | None = None) -> None:
    """PATCH all of ``data`` at offset 0 of the upload at ``path``, announced with its full
    Content-Length, but hang up after ``sent`` bytes of the body (a raw socket: requests cannot
    cut a body short)."""
    auth = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n"
            f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: {protocol.TUS_CONTENT_TYPE}\r\n"
            f"{extra}Content-Length: {len(data)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head + data[:sent])


def write_random(path: Path, size: int) -> bytes:
    """Fill ``path`` with ``size`` random bytes and return them."""
    data = os.urandom(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data
