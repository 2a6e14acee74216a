"""A full disk (a small tmpfs as the data folder): uploads answer 507 with the JSON error body,
value changes and deletes keep working, nothing is left behind, the server stays up."""
from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
import requests

from oaiofs import protocol
from tests.conftest import PASSWORD, ServerProcess

from .server_helpers import unique_id

MiB = 1 << 20
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 6 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _full(response: requests.Response) -> None:
    assert response.status_code == 507, (response.status_code, response.text[:300])
    body = response.json()
    assert body["error"] == "insufficient_storage" and set(body) == {"error", "message", "detail"}


def _tus_headers(oaio_id: str, path: str, length: int) -> dict[str, str]:
    meta = protocol.encode_upload_metadata({protocol.META_OAIO_ID: oaio_id, protocol.META_PATH: path})
    return {"Tus-Resumable": protocol.TUS_VERSION, "Upload-Length": str(length), "Upload-Metadata": meta}


def test_full_disk_answers_507_and_keeps_values_and_deletes_working(small_disk: Path):
    data = small_disk / "data"
    server = ServerProcess(data, env={"OAIOFS_DB_URL": f"sqlite:///{data / 'oaiofs.db'}",
                                      "OAIOFS_BLOBS_URL": str(data / "blobs"),
                                      "OAIOFS_MIN_FREE_BYTES": str(1 * MiB)})
    server.start()
    try:
        user = server.add_user("filler")
        s = requests.Session()
        s.auth = (user, PASSWORD)
        api = server.url + protocol.API_PREFIX
        oaio_id = unique_id()
        assert s.post(api + "/objects", json={"oaio_id": oaio_id, "values": {"n": 0}}).status_code == 201
        file_url = server.url + protocol.PATH_FILE.replace("{oaio_id}", oaio_id).replace("{path}", "{}")
        assert s.put(file_url.format("keep.txt"), data=b"kept").status_code == 200
        created = s.post(server.url + protocol.PATH_UPLOADS, headers=_tus_headers(oaio_id, "late.bin", MiB))
        assert created.status_code == 201
        upload_url = server.url + created.headers["Location"]

        stored = []
        for i in range(20):                             # fill the disk up to the reserve
            response = s.put(file_url.format(f"f{i}.bin"), data=os.urandom(700 * 1024))
            if response.status_code != 200:
                _full(response)
                break
            stored.append(f"f{i}.bin")
        else:
            pytest.fail("the disk never filled up")
        assert stored, "nothing fitted at all"
        # nothing left behind by the refused PUT: no staging file, no upload row but the tus one
        assert os.listdir(data / "blobs" / "staging") == [created.headers["Location"].rsplit("/", 1)[1]]
        with sqlite3.connect(data / "oaiofs.db") as conn:
            assert conn.execute("SELECT count(*) FROM uploads").fetchone()[0] == 1
        # tus: creation and a chunk that does not fit answer 507 too
        _full(s.post(server.url + protocol.PATH_UPLOADS, headers=_tus_headers(oaio_id, "big.bin", 4 * MiB)))
        _full(s.patch(upload_url, data=os.urandom(MiB), headers={
            "Tus-Resumable": protocol.TUS_VERSION, "Upload-Offset": "0",
            "Content-Type": protocol.TUS_CONTENT_TYPE}))
        # values and deletes still work, reads too
        assert s.patch(api + f"/objects/{oaio_id}", json={"values": {"n": 1}}).status_code == 200
        assert s.delete(file_url.format(stored[0])).status_code == 200
        assert s.get(file_url.format("keep.txt")).content == b"kept"

        # a disk that is really full (past the reserve): still no 500 and the server stays up
        filler = data / "filler"
        with open(filler, "wb", buffering=0) as handle:     # unbuffered: close has nothing left to flush
            try:
                while True:
                    handle.write(b"\0" * (64 * 1024))
            except OSError:
                pass
        for response in (s.patch(api + f"/objects/{oaio_id}", json={"values": {"n": 2}}),
                         s.put(file_url.format("tiny.txt"), data=b"t"),
                         s.delete(file_url.format(stored[-1]))):
            assert response.status_code in (200, 507), (response.status_code, response.text[:300])
            if response.status_code == 507:
                _full(response)
        filler.unlink()
        assert s.get(server.url + protocol.PATH_STAMP).status_code == 200
        assert s.patch(api + f"/objects/{oaio_id}", json={"values": {"n": 3}}).status_code == 200
        assert s.get(api + f"/objects/{oaio_id}").json()["values"]["n"] == 3
    finally:
        server.stop()
