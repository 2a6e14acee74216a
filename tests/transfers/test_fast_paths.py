"""The upload/download fast paths keep their integrity checks.

* ``TusUploader`` streams a first attempt without per-chunk checksums (the
  whole-file sha256 is checked by the server), checksums every chunk once an
  attempt was interrupted, and retries a whole-file mismatch once with checksums.
* ``CartDownloader`` hands out the sha256 it checked while streaming and refuses a
  member whose asked-for hashsum differs from the server's.
* The server answers bad credentials on the one-hop GET/PATCH/HEAD paths with 401.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from tests.conftest import PASSWORD

from oaiofs import protocol
from oaiofs.client.api import ApiClient, quote_id, quote_path
from oaiofs.client.carts import CartDownloader, cart_entry
from oaiofs.client.uploads import TusUploader
from oaiofs.errors import ChecksumMismatch, NotFound

from .helpers import TUS, new_id, sha256, write_random

pytestmark = pytest.mark.backend_neutral     # docs/testing.md: not rerun on PostgreSQL + S3

UNIT = protocol.CHUNK_UNIT


class RecordingApi(ApiClient):
    """An ApiClient that remembers the method and headers of every request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[str, dict[str, str]]] = []

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append((method, dict(kwargs.get("headers") or {})))
        return super().request(method, path, **kwargs)

    def patches(self) -> list[dict[str, str]]:
        return [headers for method, headers in self.sent if method == "PATCH"]


class StopUpload(Exception):
    """Raised from a progress callback to abandon an upload mid-way."""


def test_first_attempt_streams_without_chunk_checksums(live_server, make_user, tmp_path: Path) -> None:
    user = make_user("fast-up")
    api = RecordingApi(live_server.url, user, PASSWORD)
    src = tmp_path / "f.bin"
    data = write_random(src, 3 * UNIT + 4321)
    oaio_id = new_id()
    result = TusUploader(api, chunk_size=UNIT).upload_file(src, oaio_id, "f.bin")
    assert result["sha256"] == sha256(data) and result["size"] == len(data)
    patches = api.patches()
    assert len(patches) == 4 and not any("Upload-Checksum" in h for h in patches)
    assert api.get_file(oaio_id, "f.bin") == data
    api.close()


def test_resumed_attempt_checksums_every_chunk(live_server, make_user, tmp_path: Path) -> None:
    user = make_user("fast-resume")
    api = RecordingApi(live_server.url, user, PASSWORD)
    src = tmp_path / "f.bin"
    data = write_random(src, 4 * UNIT + 99)
    oaio_id, urls = new_id(), []

    def stop_after_two(done: int, _total: int) -> None:
        if done >= 2 * UNIT:
            raise StopUpload()

    uploader = TusUploader(api, chunk_size=UNIT)
    with pytest.raises(StopUpload):
        uploader.upload_file(src, oaio_id, "f.bin", on_url=urls.append, on_progress=stop_after_two)
    api.sent.clear()
    result = uploader.upload_file(src, oaio_id, "f.bin", url=urls[0])
    assert result["sha256"] == sha256(data)
    patches = api.patches()
    assert [h["Upload-Offset"] for h in patches] == [str(2 * UNIT), str(3 * UNIT), str(4 * UNIT)]
    assert all(h["Upload-Checksum"].startswith("sha256 ") for h in patches)
    assert api.get_file(oaio_id, "f.bin") == data
    api.close()


def test_whole_file_mismatch_is_retried_once_with_checksums_then_refused(live_server, make_user,
                                                                          tmp_path: Path) -> None:
    user = make_user("fast-bad")
    api = RecordingApi(live_server.url, user, PASSWORD)
    src = tmp_path / "f.bin"
    write_random(src, 2 * UNIT + 5)
    oaio_id, urls = new_id(), []
    api.create_object({}, oaio_id)
    with pytest.raises(ChecksumMismatch):
        TusUploader(api, chunk_size=UNIT).upload_file(src, oaio_id, "f.bin", sha256="0" * 64, on_url=urls.append)
    assert len(urls) == 2 and urls[0] != urls[1]            # started afresh once
    patches = api.patches()
    assert len(patches) == 6                                 # 3 chunks per attempt
    assert not any("Upload-Checksum" in h for h in patches[:3])
    assert all("Upload-Checksum" in h for h in patches[3:])
    assert api.get_object(oaio_id)["files"] == []           # nothing was committed
    for url in urls:                                         # and both uploads were dropped
        with pytest.raises(NotFound):
            TusUploader(api).status(url)
    api.close()


def test_cart_download_hands_out_the_checked_sha256(live_server, make_user, tmp_path: Path) -> None:
    user = make_user("fast-cart")
    api = ApiClient(live_server.url, user, PASSWORD)
    oaio_id = new_id()
    api.create_object({}, oaio_id)
    files = {"small.txt": b"x" * 4096, "big.bin": write_random(tmp_path / "big", 3 * (1 << 20) + 7)}
    for path, data in files.items():
        api.put_file(oaio_id, path, data)
    downloader = CartDownloader(api)
    written = downloader.fetch([cart_entry(oaio_id, p, sha256(d)) for p, d in files.items()], tmp_path / "out")
    assert len(written) == 2
    for path, data in files.items():
        target = tmp_path / "out" / path
        assert target.read_bytes() == data
        assert downloader.take_verified_sha256(target) == sha256(data)
        assert downloader.take_verified_sha256(target) is None          # handed out once
    # the asked-for sha256 must match too, not only the server's PAX record
    with pytest.raises(ChecksumMismatch):
        downloader.fetch([dict(cart_entry(oaio_id, "small.txt", sha256(files["small.txt"])),
                               hashsum=sha256(b"other"))], tmp_path / "out2")
    assert not (tmp_path / "out2" / "small.txt").exists()
    api.close()


def test_one_hop_routes_still_refuse_bad_credentials(live_server, make_user, tmp_path: Path) -> None:
    user = make_user("fast-auth")
    api = ApiClient(live_server.url, user, PASSWORD)
    oaio_id = new_id()
    api.create_object({}, oaio_id)
    api.put_file(oaio_id, "a.txt", b"hello")
    url = TusUploader(api).create(oaio_id, "b.txt", 10)
    bad = requests.Session()
    bad.auth = (user, "wrong-password")
    file_url = live_server.url + protocol.PATH_FILE.format(oaio_id=quote_id(oaio_id), path=quote_path("a.txt"))
    assert bad.get(file_url).status_code == 401
    assert bad.head(url, headers=TUS).status_code == 401
    assert bad.patch(url, data=b"x", headers=dict(TUS, **{"Upload-Offset": "0",
                                                          "Content-Type": protocol.TUS_CONTENT_TYPE})).status_code == 401
    assert bad.delete(url, headers=TUS).status_code == 401
    assert TusUploader(api).offset(url) == 0                  # untouched
    api.close()


def _patch(session: requests.Session, url: str, offset: int, data: bytes, **extra: str) -> requests.Response:
    return session.patch(url, data=data, headers=dict(TUS, **{"Upload-Offset": str(offset),
                                                              "Content-Type": protocol.TUS_CONTENT_TYPE}, **extra))


def test_creation_defer_length(live_server, make_user) -> None:
    user = make_user("fast-defer")
    api = ApiClient(live_server.url, user, PASSWORD)
    session = requests.Session()
    session.auth = (user, PASSWORD)
    options = session.options(live_server.url + protocol.PATH_UPLOADS, headers=TUS)
    assert "creation-defer-length" in options.headers["Tus-Extension"].split(",")
    oaio_id = new_id()
    api.create_object({}, oaio_id)
    uploader = TusUploader(api)
    both = session.post(live_server.url + protocol.PATH_UPLOADS, headers=dict(
        TUS, **{"Upload-Length": "3", "Upload-Defer-Length": "1",
                "Upload-Metadata": protocol.encode_upload_metadata({"oaio_id": oaio_id, "path": "x"})}))
    assert both.status_code == 400 and both.json()["error"]

    data = b"0123456789" * 1000
    url = uploader.create(oaio_id, "d.bin", None)
    head = session.head(url, headers=TUS)
    assert head.headers["Upload-Defer-Length"] == "1" and "Upload-Length" not in head.headers
    assert _patch(session, url, 0, data).status_code == 204      # all bytes in, length still open
    assert api.get_object(oaio_id)["files"] == []                 # nothing committed without a length
    below = _patch(session, url, len(data), b"", **{"Upload-Length": "5"})      # below the offset
    assert below.status_code == 422 and below.json()["error"] == "invalid_value"
    wrong = _patch(session, url, len(data), b"", **{"Upload-Length": str(len(data)),
                                                    protocol.HEADER_SHA256: sha256(b"other")})
    assert wrong.status_code == 460                              # whole-file sha256 checked at the end
    assert api.get_object(oaio_id)["files"] == []

    url = uploader.create(oaio_id, "d.bin", None)
    assert _patch(session, url, 0, data[:4000]).status_code == 204
    done = _patch(session, url, 4000, data[4000:], **{"Upload-Length": str(len(data)),
                                                      protocol.HEADER_SHA256: sha256(data)})
    assert done.status_code == 204 and done.headers[protocol.HEADER_UPLOAD_RESULT_SHA256] == sha256(data)
    assert api.get_file(oaio_id, "d.bin") == data
    api.close()


def test_upload_file_finishes_a_deferred_upload(live_server, make_user, tmp_path: Path) -> None:
    user = make_user("fast-defer2")
    api = RecordingApi(live_server.url, user, PASSWORD)
    src = tmp_path / "f.bin"
    data = write_random(src, 2 * UNIT + 17)
    oaio_id = new_id()
    uploader = TusUploader(api, chunk_size=UNIT)
    url = uploader.create(oaio_id, "f.bin", None, base_version=0)
    with open(src, "rb") as fh:
        assert uploader.send_range(url, fh.fileno(), 0, UNIT) == UNIT
    api.sent.clear()
    result = uploader.upload_file(src, oaio_id, "f.bin", url=url)
    assert result["sha256"] == sha256(data)
    patches = api.patches()
    assert [h["Upload-Offset"] for h in patches] == [str(UNIT), str(2 * UNIT)]
    assert all(h["Upload-Length"] == str(len(data)) and "Upload-Checksum" not in h for h in patches)
    assert api.get_file(oaio_id, "f.bin") == data
    api.close()
