"""The trash through real mounts (issue 17): a ``U`` user's ``rm -r`` restored by the owner with
``oaiofs restore``, a deleted object restored, ``oaiofs trash [--empty]`` rights, hostile input;
ends on a second mount with an empty cache."""
from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from tests.conftest import PASSWORD, wait_until

from tests.drive.helpers import oaiofs

pytestmark = pytest.mark.timeout(300)

MTIME_A = 1_600_000_000_123_456_789
MTIME_DIR = 1_500_000_000_000_000_000


def snapshot(root) -> dict[str, tuple]:
    """Every entry under ``root``: kind, bytes (files), link target, permission bits, mtime in ns."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(full), None, st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", None, stat.S_IMODE(st.st_mode), st.st_mtime_ns)
            else:
                with open(full, "rb") as f:
                    out[rel] = ("file", f.read(), stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return out


def without_values_mtime(snap: dict[str, tuple]) -> dict[str, tuple]:
    """values.json's mtime is the object's last change: a restore is one."""
    return {k: v[:3] if k == "values.json" else v for k, v in snap.items()}


def trash_json(*args: str, password: str | None = None) -> list[dict]:
    return json.loads(oaiofs("trash", *args, "--json", password=password).stdout)


def test_u_users_rm_r_is_restored_by_the_owner(live_server, make_user, api_for, mounted_drive, tmp_path):
    alice, bob = make_user("talice"), make_user("tbob")
    api_a = api_for(alice)
    oid = api_a.create_object({"_name": "Team"})["oaio_id"]
    api_a.put_file(oid, "docs/a.txt", b"alpha\n", mtime_ns=MTIME_A, mode=0o600)
    api_a.put_file(oid, "docs/sub/b.bin", os.urandom(300_000))
    api_a.put_file(oid, "docs/run.sh", b"#!/bin/sh\necho hi\n", mode=0o755)
    api_a.make_dir(oid, "docs/empty")
    api_a.request("PUT", f"/api/v1/objects/{oid}/links/docs/link", json={"target": "a.txt"})
    api_a.put_file(oid, "keep.txt", b"stays\n")
    api_a.request("PATCH", f"/api/v1/objects/{oid}/files/docs", json={"mode": 0o750, "mtime_ns": MTIME_DIR})
    api_a.set_subscription(oid, bob, "U")
    drive_a, drive_b = mounted_drive(live_server, alice), mounted_drive(live_server, bob)
    docs_a, docs_b = drive_a.path("Team", "docs"), drive_b.path("Team", "docs")
    wait_until(lambda: docs_a.joinpath("link").is_symlink() and docs_b.joinpath("run.sh").exists(),
               message="both mounts list the object")
    before = snapshot(docs_b)                 # read through bob's mount: bytes fetched, modes, mtimes
    assert before["a.txt"] == ("file", b"alpha\n", 0o600, MTIME_A) and before["link"][:2] == ("link", "a.txt")
    docs_meta = (stat.S_IMODE(docs_a.stat().st_mode), docs_a.stat().st_mtime_ns)
    assert docs_meta[1] == MTIME_DIR

    # bob (U) runs rm -r through his mount; it reaches the server and alice's mount
    subprocess.run(["rm", "-r", str(docs_b)], check=True, timeout=60)
    wait_until(lambda: not any(f["path"].startswith("docs") for f in api_a.get_object(oid)["files"]),
               timeout=60, message="the deletion reaches the server")
    wait_until(lambda: not docs_a.exists(), timeout=60, message="alice's mount drops docs")

    # alice lists the trash (object folder, whole drive, the deleted path itself): who, when, size
    items = trash_json(str(drive_a.path("Team")))
    assert [(i["path"], i["deleted_by"], i["entry_kind"], i["files"]) for i in items] == [("docs", bob, "dir", 3)]
    assert items[0]["where"] == str(docs_a) and items[0]["size"] == 6 + 300_000 + len(b"#!/bin/sh\necho hi\n")
    assert [i["id"] for i in trash_json(str(drive_a.mountpoint))] == [items[0]["id"]]
    assert [i["id"] for i in trash_json(str(docs_a / "sub"))] == [items[0]["id"]]
    text = oaiofs("trash", str(drive_a.path("Team"))).stdout
    assert bob in text and "docs/" in text and "3 file(s)" in text

    # hostile: a path never deleted, a path outside a mount, a bad id and ..-paths by --server
    never = oaiofs("restore", str(drive_a.path("Team", "never-there.txt")), check=False)
    assert never.returncode == 1 and "not in the trash" in never.stderr
    outside = oaiofs("restore", str(tmp_path / "nowhere"), check=False)
    assert outside.returncode == 1 and "not inside an oaiofs mount" in outside.stderr
    server = ("--server", live_server.url, "--user", alice)
    bad_id = oaiofs("restore", "no-such-object/docs", *server, password=PASSWORD, check=False)
    assert bad_id.returncode == 1 and "not found" in bad_id.stderr
    dotdot = oaiofs("restore", f"{oid}/../docs", *server, password=PASSWORD, check=False)
    assert dotdot.returncode == 1 and ".." in dotdot.stderr
    # U may not empty the trash; nothing changed
    refused = oaiofs("trash", "--empty", str(drive_b.path("Team")), check=False)
    assert refused.returncode == 1 and "only the creator" in refused.stderr
    assert [i["id"] for i in trash_json(str(drive_b.path("Team")))] == [items[0]["id"]]

    # the owner restores the deleted folder by its path: everything is back, in both mounts
    out = oaiofs("restore", str(docs_a)).stdout
    assert "restored" in out and str(docs_a) in out
    wait_until(lambda: docs_a.joinpath("sub", "b.bin").exists(), timeout=30, message="restored in alice's mount")
    wait_until(lambda: docs_b.joinpath("link").is_symlink(), timeout=60, message="restored in bob's mount")
    assert snapshot(docs_a) == before
    assert snapshot(docs_b) == before
    for docs in (docs_a, docs_b):                    # the folder itself: mode and mtime as they were
        assert (stat.S_IMODE(docs.stat().st_mode), docs.stat().st_mtime_ns) == docs_meta
    assert trash_json(str(drive_a.path("Team"))) == []

    # a file deleted again and re-created: restored beside it under a clear name
    os.unlink(docs_a / "a.txt")
    wait_until(lambda: "docs/a.txt" not in {f["path"] for f in api_a.get_object(oid)["files"]}, timeout=60,
               message="delete uploaded")
    (docs_a / "a.txt").write_bytes(b"new alpha\n")
    wait_until(lambda: "docs/a.txt" in {f["path"] for f in api_a.get_object(oid)["files"]}, timeout=60,
               message="new file uploaded")
    res = json.loads(oaiofs("restore", str(docs_a / "a.txt"), "--json").stdout)
    assert res["restored_as"].startswith("docs/a (restored ") and res["restored_as"].endswith(").txt")
    beside = drive_a.path("Team", res["restored_as"])
    wait_until(beside.exists, timeout=30, message="restored beside")
    assert beside.read_bytes() == b"alpha\n" and (docs_a / "a.txt").read_bytes() == b"new alpha\n"

    # the owner empties the trash; then a second mount with an empty cache reads everything back
    (docs_a / "run.sh").unlink()
    wait_until(lambda: trash_json(str(drive_a.mountpoint)) != [], timeout=60, message="delete uploaded")
    assert "removed" in oaiofs("trash", "--empty", str(drive_a.path("Team"))).stdout
    assert trash_json(str(drive_a.mountpoint)) == []
    gone = oaiofs("restore", str(docs_a / "run.sh"), check=False)
    assert gone.returncode == 1 and "not in the trash" in gone.stderr
    expected = snapshot(drive_a.path("Team"))
    drive_c = mounted_drive(live_server, bob, cache_dir=tmp_path / "fresh-cache")
    wait_until(lambda: drive_c.path("Team", res["restored_as"]).exists(), message="fresh mount lists it")
    assert snapshot(drive_c.path("Team")) == expected
    assert expected["docs/sub/b.bin"] == before["sub/b.bin"] and expected["docs/link"] == before["link"]


def test_deleted_object_restored_through_the_mount_and_by_id(live_server, make_user, api_for, mounted_drive,
                                                           tmp_path):
    alice, dora, ulf = make_user("oalice"), make_user("odora"), make_user("oulf")
    api_a = api_for(alice)
    oid = api_a.create_object({"_name": "Gone Soon"})["oaio_id"]
    api_a.put_file(oid, "f/data.bin", os.urandom(70_000), mode=0o640)
    api_a.set_subscription(oid, dora, "D")
    api_a.set_subscription(oid, ulf, "U")
    drive_a = mounted_drive(live_server, alice)
    folder = drive_a.path("Gone Soon")
    wait_until(lambda: folder.joinpath("f", "data.bin").exists(), message="listed")
    before = without_values_mtime(snapshot(folder))
    api_for(dora).delete_object(oid)
    wait_until(lambda: not folder.exists(), timeout=60, message="the deleted object leaves the mount")
    items = trash_json(str(drive_a.mountpoint))
    assert [(i["kind"], i["deleted_by"], i["where"]) for i in items] == [("object", dora, str(folder))]
    assert [i["kind"] for i in trash_json(oid, "--server", live_server.url, "--user", ulf, password=PASSWORD)] \
        == ["object"]
    # U cannot restore an object; C/D can: through the mount by its old folder
    server_u = ("--server", live_server.url, "--user", ulf)
    refused = oaiofs("restore", oid, *server_u, password=PASSWORD, check=False)
    assert refused.returncode == 1 and "C or D" in refused.stderr
    out = oaiofs("restore", str(folder)).stdout
    assert "restored" in out
    wait_until(lambda: folder.joinpath("f", "data.bin").exists(), timeout=30, message="the object re-appears")
    assert without_values_mtime(snapshot(folder)) == before
    assert sorted((s["username"], s["access_right"]) for s in api_a.subscriptions(oid)) == \
        sorted([(alice, "C"), (dora, "D"), (ulf, "U")])
    # again by id with --server (the D user), and a second restore is refused
    api_a.delete_object(oid)
    wait_until(lambda: not folder.exists(), timeout=60, message="deleted again")
    oaiofs("restore", oid, "--server", live_server.url, "--user", dora, password=PASSWORD)
    again = oaiofs("restore", oid, "--server", live_server.url, "--user", dora, password=PASSWORD, check=False)
    assert again.returncode == 1 and "not deleted" in again.stderr
    wait_until(folder.exists, timeout=60, message="restored by id shows in the mount (change feed)")
    drive_u = mounted_drive(live_server, ulf, cache_dir=tmp_path / "empty-cache")
    wait_until(lambda: drive_u.path("Gone Soon", "f", "data.bin").exists(), message="fresh mount")
    assert without_values_mtime(snapshot(drive_u.path("Gone Soon"))) == before
