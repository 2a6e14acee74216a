"""The real PyPI clients work against the server: tuspy (tus 1.0) and pacifica-downloader (cartd)."""
from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from tests.conftest import PASSWORD
from pacifica.downloader import Downloader
from tusclient.client import TusClient

from oaiofs import protocol

from .helpers import new_id, sha256, write_random

pytestmark = pytest.mark.backend_neutral     # docs/testing.md: not rerun on PostgreSQL + S3

UNIT = protocol.CHUNK_UNIT


def test_tuspy_uploads_resumably(live_server, make_user, api_for, tmp_path: Path):
    user = make_user("tuspy")
    src = tmp_path / "tuspy.bin"
    data = write_random(src, 3 * UNIT + 1234)
    oaio_id = new_id()
    auth = "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    client = TusClient(live_server.url + protocol.PATH_UPLOADS, headers={"Authorization": auth})
    meta = {"oaio_id": oaio_id, "path": "via/tuspy.bin", "sha256": sha256(data)}
    first = client.uploader(file_path=str(src), chunk_size=UNIT, metadata=meta, upload_checksum=True)
    first.upload(stop_at=UNIT)                      # stop after one chunk, like a client that went away
    assert first.offset == UNIT

    second = client.uploader(file_path=str(src), url=first.url, chunk_size=UNIT, upload_checksum=True)
    assert second.offset == UNIT                    # tuspy asked the server (HEAD) where to go on
    second.upload()
    assert second.offset == len(data)
    assert api_for(user).get_file(oaio_id, "via/tuspy.bin") == data


def test_pacifica_downloader_fetches_a_cart_byte_identical(live_server, make_user, api_for, tmp_path: Path):
    owner, reader = make_user("pac-owner"), make_user("pac-reader")
    api = api_for(owner)
    oaio_id = new_id()
    api.create_object({}, oaio_id)
    files = {"top.txt": b"top level file\n", "sub/dir/data.bin": bytes(range(256)) * 300,
             "sub/other.csv": b"a,b\n1,2\n"}
    for path, data in files.items():
        api.put_file(oaio_id, path, data)
    api.set_subscription(oaio_id, reader, "r")
    records = []
    for i, (path, data) in enumerate(files.items()):
        subdir, _, name = path.rpartition("/")
        algo = ("sha256", "md5", "sha1")[i % 3]
        records.append({"destinationTable": "Files", "_id": protocol.cart_file_id(oaio_id, path),
                        "subdir": subdir, "name": name, "hashtype": algo,
                        "hashsum": hashlib.new(algo, data).hexdigest()})
    records.append({"destinationTable": "Transactions", "_id": 1})   # ignored by the downloader
    cloudevent = {"eventType": "org.pacifica.metadata.ingest", "cloudEventsVersion": "0.1",
                  "source": "/pacifica/metadata/ingest", "eventID": "1", "data": records}

    downloader = Downloader(cart_api_url=live_server.url + protocol.PATH_CARTS, auth={"auth": (reader, PASSWORD)})
    downloader.cloudevent(str(tmp_path), cloudevent, filename="data", timeout=30)
    for path, data in files.items():
        assert (tmp_path / "data" / path).read_bytes() == data
    assert sorted(p.relative_to(tmp_path / "data").as_posix() for p in (tmp_path / "data").rglob("*")
                  if p.is_file()) == sorted(files)
