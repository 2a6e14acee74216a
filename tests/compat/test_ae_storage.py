"""The ``Oaiofs`` storage plugin (oaiofs.compat.ae_storage) under the unmodified seed client, and the drive."""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.drive.conftest import mounted_drive  # noqa: F401  (fixture)

from .helpers import RawSession, close, seed_client

pytest.importorskip("ae.oaio_client")
import ae.paths  # noqa: E402


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _server_files(api, oaio_id: str) -> dict[str, str]:
    return {f["path"]: f["sha256"] for f in api.get_object(oaio_id)["files"] if f["kind"] == "file"}


def test_register_file_and_folder_reach_a_second_device_byte_identical(live_server, make_user, api_for,
                                                                      tmp_path: Path, monkeypatch):
    alice = make_user("alice")
    rnd = random.Random(15)
    home1, home2 = tmp_path / "home1", tmp_path / "home2"
    monkeypatch.setitem(ae.paths.PATH_PLACEHOLDERS, "usr", str(home1))       # device 1's home
    c1 = seed_client(live_server, alice, tmp_path / "dev1")
    c2 = seed_client(live_server, alice, tmp_path / "dev2")
    try:
        blob = rnd.randbytes(300_000)
        fobj = c1.register_file("doc.bin", blob)
        assert fobj is not None, c1.error_message
        assert _server_files(api_for(alice), fobj.oaio_id) == {"doc.bin": _sha(blob)}

        folder = {"a.jpg": rnd.randbytes(70_000), "sub/b.txt": "grün ✓\n".encode(), "sub/deep/ünï.txt": b"",
                  ".hidden": b"dot file"}
        for rel, data in folder.items():
            (home1 / "photos" / rel).parent.mkdir(parents=True, exist_ok=True)
            (home1 / "photos" / rel).write_bytes(data)
        dobj = c1.register_folder(str(home1 / "photos"))
        assert dobj is not None, c1.error_message
        assert dobj.client_values["_root_path"] == "{usr}/photos"
        assert _server_files(api_for(alice), dobj.oaio_id) == {k: _sha(v) for k, v in folder.items()}

        monkeypatch.setitem(ae.paths.PATH_PLACEHOLDERS, "usr", str(home2))   # device 2: another home
        assert c2.synchronize_with_server_if_online(), c2.error_message
        assert (tmp_path / "dev2" / "filez" / fobj.oaio_id / "doc.bin").read_bytes() == blob
        for rel, data in folder.items():
            assert (home2 / "photos" / rel).read_bytes() == data

        monkeypatch.setitem(ae.paths.PATH_PLACEHOLDERS, "usr", str(home1))
        new_blob = rnd.randbytes(5000)
        c1.update_file(fobj.oaio_id, file_content=new_blob)
        (home1 / "photos" / "a.jpg").unlink()
        (home1 / "photos" / "new.txt").write_bytes(b"new in the folder")
        c1.update_folder(dobj.oaio_id)
        assert _server_files(api_for(alice), fobj.oaio_id) == {"doc.bin": _sha(new_blob)}
        expected = {k: _sha(v) for k, v in folder.items() if k != "a.jpg"} | {"new.txt": _sha(b"new in the folder")}
        assert _server_files(api_for(alice), dobj.oaio_id) == expected

        monkeypatch.setitem(ae.paths.PATH_PLACEHOLDERS, "usr", str(home2))
        assert c2.synchronize_with_server_if_online(), c2.error_message
        assert (tmp_path / "dev2" / "filez" / fobj.oaio_id / "doc.bin").read_bytes() == new_blob
        assert (home2 / "photos" / "new.txt").read_bytes() == b"new in the folder"
    finally:
        close(c1, c2)


def test_storage_rights_and_hostile_paths(live_server, make_user, tmp_path: Path):
    alice, bob, eve = make_user("alice"), make_user("bob"), make_user("eve")
    c1 = seed_client(live_server, alice, tmp_path / "dev1")
    try:
        fobj = c1.register_file("secret.txt", b"top secret")
        assert fobj is not None and c1.upsert_subscription(fobj.oaio_id, bob, "r") > 0
    finally:
        close(c1)
    path = f"{fobj.oaio_id}/{fobj.client_stamp}/secret.txt"

    def storage(user: str):
        raw = RawSession(live_server)
        assert raw.login(user).status_code == 200
        args = raw.get("csh_args/Oaiofs").json()
        from oaiofs.compat.ae_storage import OaiofsApi
        return OaiofsApi(**args)

    reader, stranger = storage(bob), storage(eve)
    assert reader.deployed_file_content(path) == b"top secret"
    src = tmp_path / "x.txt"
    src.write_bytes(b"overwrite attempt")
    assert reader.deploy_file(path, str(src)) == "" and "403" in reader.error_message      # r may not write
    assert stranger.deployed_file_content(path) is None and "404" in stranger.error_message  # strangers see nothing
    assert stranger.deploy_file(path, str(src)) == "" and "404" in stranger.error_message
    for bad in (f"{fobj.oaio_id}/{fobj.client_stamp}/../x", f"{fobj.oaio_id}/notastamp/x", "justone",
                f"{fobj.oaio_id}/{fobj.client_stamp}//etc/passwd"):
        assert reader.deployed_file_content(bad) is None and "422" in reader.error_message, bad
    assert reader.deployed_file_content(path) == b"top secret"                             # nothing changed


def test_seed_objects_in_the_drive_and_drive_changes_reach_the_client(live_server, make_user, api_for,
                                                                       mounted_drive, tmp_path: Path,  # noqa: F811
                                                                       monkeypatch):
    alice = make_user("alice")
    monkeypatch.setitem(ae.paths.PATH_PLACEHOLDERS, "usr", str(tmp_path / "home1"))
    c1 = seed_client(live_server, alice, tmp_path / "dev1")
    c2 = seed_client(live_server, alice, tmp_path / "dev2")
    try:
        report = random.Random(4).randbytes(200_000)
        fobj = c1.register_file("report.bin", report)
        nobj = c1.register_object({"_name": "drive-notes", "k": "v"})
        assert fobj is not None and nobj is not None, c1.error_message
        album = {"one.jpg": random.Random(6).randbytes(30_000), "sub/two.txt": "zwei ✓".encode()}
        for rel, data in album.items():
            (tmp_path / "home1" / "album" / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "home1" / "album" / rel).write_bytes(data)
        dobj = c1.register_folder(str(tmp_path / "home1" / "album"))
        assert dobj is not None, c1.error_message
        monkeypatch.setitem(ae.paths.PATH_PLACEHOLDERS, "usr", str(tmp_path / "home2"))
        assert c2.synchronize_with_server_if_online(), c2.error_message

        drive = mounted_drive(live_server, alice)
        file_dir, notes_dir = drive.path(fobj.oaio_id), drive.path("drive-notes")
        wait_until(lambda: (file_dir / "report.bin").exists() and notes_dir.exists(), timeout=60)
        assert (file_dir / "report.bin").read_bytes() == report                    # the objects appear in the drive
        assert json.loads((notes_dir / "values.json").read_text())["k"] == "v"
        for rel, data in album.items():                                              # register_folder's files too
            assert (drive.path(dobj.oaio_id) / rel).read_bytes() == data

        (notes_dir / "values.json").write_text(json.dumps({"_name": "drive-notes", "k": "from the drive ✓"}))
        added = random.Random(5).randbytes(40_000)
        (file_dir / "added.bin").write_bytes(added)
        wait_until(lambda: api_for(alice).get_object(nobj.oaio_id)["values"].get("k") == "from the drive ✓"
                   and "added.bin" in _server_files(api_for(alice), fobj.oaio_id), timeout=60)

        assert c2.synchronize_with_server_if_online(), c2.error_message            # drive changes reach the client
        assert c2.client_objectz[nobj.oaio_id].client_values["k"] == "from the drive ✓"
        assert (tmp_path / "dev2" / "filez" / fobj.oaio_id / "added.bin").read_bytes() == added
        assert (tmp_path / "dev2" / "filez" / fobj.oaio_id / "report.bin").read_bytes() == report
        c2.update_object(nobj.oaio_id, {"k": "back from the client"})             # and the client can go on

        second = mounted_drive(live_server, alice)                                   # empty cache: read back
        wait_until(lambda: (second.path(fobj.oaio_id) / "added.bin").exists(), timeout=60)
        assert (second.path(fobj.oaio_id) / "added.bin").read_bytes() == added
        assert (second.path(fobj.oaio_id) / "report.bin").read_bytes() == report
        wait_until(lambda: json.loads((second.path("drive-notes") / "values.json").read_text())["k"]
                   == "back from the client", timeout=60)
    finally:
        close(c1, c2)
