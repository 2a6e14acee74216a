"""The server's data folder and database are private (issue 13 item 8), and an object id taken by a
stranger answers exactly like one's own taken id (the documented decision in docs/api.md)."""
from __future__ import annotations

import stat
import subprocess
import sys

import requests

from oaiofs import protocol
from tests.conftest import PASSWORD
from tests.transfers.helpers import basic_session, new_id


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_fresh_data_folder_is_0700_and_database_0600(tmp_path) -> None:
    data = tmp_path / "fresh" / "data"
    subprocess.run([sys.executable, "-m", "oaiofs", "user", "add", "alice", "--data", str(data)], check=True,
                   env={"OAIOFS_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"}, capture_output=True)
    assert _mode(data) == 0o700
    db = data / "oaiofs.db"
    assert _mode(db) == 0o600
    for companion in (data / "oaiofs.db-wal", data / "oaiofs.db-shm"):
        if companion.exists():
            assert _mode(companion) & 0o077 == 0, companion


def test_served_database_stays_0600(server_factory) -> None:
    server = server_factory()
    alice = server.add_user("alice")
    session = basic_session(alice)
    assert session.post(server.url + protocol.PATH_OBJECTS, json={"values": {"a": 1}}).status_code == 201
    for path in server.data_dir.glob("oaiofs.db*"):
        if not path.name.endswith(".lock"):
            assert _mode(path) & 0o077 == 0, (path, oct(_mode(path)))


def test_strangers_taken_id_answers_like_ones_own(live_server, make_user) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    a, b = basic_session(alice), basic_session(bob)
    api = live_server.url + protocol.API_PREFIX
    oaio_id = new_id()
    assert a.post(api + "/objects", json={"values": {"secret": 1}, "oaio_id": oaio_id}).status_code == 201
    own = a.post(api + "/objects", json={"values": {}, "oaio_id": oaio_id})
    stranger = b.post(api + "/objects", json={"values": {}, "oaio_id": oaio_id})
    assert own.status_code == stranger.status_code == 409
    assert own.json() == stranger.json()                  # same code, message and detail: nothing about the owner
    assert "secret" not in stranger.text and alice not in stranger.text
    assert b.get(f"{api}/objects/{oaio_id}").status_code == 404
    assert requests.get(f"{api}/objects/{oaio_id}", auth=(bob, PASSWORD), timeout=30).json()["error"] == "not_found"
