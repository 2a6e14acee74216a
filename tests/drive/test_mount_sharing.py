"""End-to-end: changes made elsewhere show up in a mount through the change feed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import wait_until
from tests.drive.helpers import server_has, sha256

pytestmark = pytest.mark.timeout(120)


def _read(path):
    try:
        return path.read_bytes()
    except OSError:
        return None


def test_two_users_see_each_others_changes(live_server, make_user, api_for, mounted_drive):
    alice, bob = make_user("alice"), make_user("bob")
    api_a, api_b = api_for(alice), api_for(bob)
    oid = api_a.create_object({"_name": "Together"})["oaio_id"]
    api_a.put_file(oid, "plan.txt", b"v1")
    drive_a = mounted_drive(live_server, alice)
    drive_b = mounted_drive(live_server, bob)
    assert os.listdir(drive_b.mountpoint) == []

    api_a.set_subscription(oid, bob, "U")                      # new subscription -> appears for bob
    wait_until(lambda: _read(drive_b.path("Together", "plan.txt")) == b"v1", message="share visible to bob")

    drive_a.path("Together", "plan.txt").write_bytes(b"v2 from alice")
    wait_until(lambda: _read(drive_b.path("Together", "plan.txt")) == b"v2 from alice",
               message="alice's write visible to bob")
    drive_b.path("Together", "reply.txt").write_bytes(b"bob was here")
    wait_until(lambda: _read(drive_a.path("Together", "reply.txt")) == b"bob was here",
               message="bob's new file visible to alice")

    api_b.update_values(oid, {"_name": "Together", "status": "done"}, mode="replace")   # via the API
    wait_until(lambda: b'"done"' in (_read(drive_a.path("Together", "values.json")) or b""),
               message="values change visible")
    api_a.delete_file(oid, "plan.txt")
    wait_until(lambda: not drive_b.path("Together", "plan.txt").exists(), message="deletion visible")

    api_a.set_subscription(oid, bob, "x")                      # revoked -> disappears
    wait_until(lambda: not drive_b.path("Together").exists(), message="revoked share gone")
    other = api_a.create_object({"_name": "Later"})["oaio_id"]  # new object of alice -> appears for her
    wait_until(lambda: drive_a.path("Later").is_dir(), message="new object visible")
    api_a.delete_object(other)
    wait_until(lambda: not drive_a.path("Later").exists(), message="deleted object gone")


def test_open_file_keeps_its_version(live_server, make_user, api_for, mounted_drive):
    """Close-to-open: a handle keeps the bytes it opened; the next open sees the new version."""
    user = make_user("c2o")
    api = api_for(user)
    oid = api.create_object({"_name": "C2O"})["oaio_id"]
    old = b"A" * 300_000
    api.put_file(oid, "f.bin", old)
    drive = mounted_drive(live_server, user)
    path = drive.path("C2O", "f.bin")
    with open(path, "rb") as held:
        assert held.read(10) == b"A" * 10
        api.put_file(oid, "f.bin", b"B" * 200_000)
        wait_until(lambda: os.getxattr(path, "user.oaio.sha256") == sha256(b"B" * 200_000).encode(),
                   message="new version listed")
        assert os.stat(path).st_size == len(old)       # the reader's version, while it is open
        assert held.read() == old[10:]
    assert path.read_bytes() == b"B" * 200_000
    assert server_has(api, oid, "f.bin", b"B" * 200_000)


def test_concurrent_edit_keeps_both_versions(live_server, make_user, api_for, mounted_drive):
    user = make_user("conf")
    api = api_for(user)
    oid = api.create_object({"_name": "Conf"})["oaio_id"]
    api.put_file(oid, "doc.txt", b"base")
    drive = mounted_drive(live_server, user)
    path = drive.path("Conf", "doc.txt")
    with open(path, "r+b") as fh:                      # opened at the server's version
        api.put_file(oid, "doc.txt", b"theirs")        # someone else saves meanwhile
        fh.write(b"mine")
    wait_until(lambda: len([f for f in api.get_object(oid)["files"] if f["kind"] == "file"]) == 2,
               message="conflict copy uploaded")
    files = {f["path"]: f for f in api.get_object(oid)["files"]}
    copy = next(p for p in files if p != "doc.txt")
    assert "conflict" in copy and api.get_file(oid, "doc.txt") == b"theirs"
    assert api.get_file(oid, copy) == b"mine"
    wait_until(lambda: path.read_bytes() == b"theirs" and drive.path("Conf", copy).read_bytes() == b"mine",
               message="mount shows both")
    assert os.getxattr(path, "user.oaio.status") == b"conflict"
    status = json.loads(os.getxattr(drive.mountpoint, "user.oaio.mount_status"))
    assert any(c["conflict_path"] == copy for c in status["conflicts"])


def test_upload_refused_after_rights_revoked_keeps_local_bytes(live_server, make_user, api_for, mounted_drive):
    owner, writer = make_user("own"), make_user("wri")
    api = api_for(owner)
    oid = api.create_object({"_name": "Revoke"})["oaio_id"]
    api.put_file(oid, "f.txt", b"server")
    api.set_subscription(oid, writer, "U")
    drive = mounted_drive(live_server, writer)
    path = drive.path("Revoke", "f.txt")
    with open(path, "r+b") as fh:
        api.set_subscription(oid, writer, "r")                 # downgraded while the file is open
        fh.write(b"LOCAL!")
    wait_until(lambda: os.getxattr(path, "user.oaio.status") == b"error", message="upload refused")
    assert path.read_bytes() == b"LOCAL!"                      # the local bytes are kept and shown
    status = json.loads(os.getxattr(drive.mountpoint, "user.oaio.mount_status"))
    assert [f["path"] for f in status["failed"]] == ["f.txt"]
    assert api.get_file(oid, "f.txt") == b"server"
    shown = subprocess.run([sys.executable, "-m", "oaiofs", "status", str(drive.mountpoint)],
                           capture_output=True, text=True)
    assert "FAILED" in shown.stdout and "f.txt" in shown.stdout
