"""End-to-end: a real server, a real FUSE mount, ordinary file operations."""
from __future__ import annotations

import errno
import json
import os
import stat
import subprocess

import pytest

from oaiofs.errors import Gone, NotFound
from oaiofs.vfs.nodes import collision_suffix
from tests.conftest import wait_until
from tests.drive.helpers import mount_status, server_file, server_has, sha256
from tests.durability.helpers import server_uploads

pytestmark = pytest.mark.timeout(120)


def test_layout_values_and_lazy_reads(live_server, user_api, mounted_drive):
    user, api = user_api
    doc = api.create_object({"_name": "Report/2024", "n": 1})
    api.put_file(doc["oaio_id"], "notes.txt", b"hello\n")
    api.put_file(doc["oaio_id"], "deep/er/data.bin", bytes(range(256)) * 1000)
    twin1 = api.create_object({"_name": "Twin"})
    twin2 = api.create_object({"_name": "Twin"})
    nameless = api.create_object({"k": "v"})
    drive = mounted_drive(live_server, user)

    names = set(os.listdir(drive.mountpoint))
    assert "Report⁄2024" in names                      # '/' made filename-safe
    assert {"Twin", "Twin" + collision_suffix(twin2["oaio_id"])} <= names   # older one keeps the name
    assert any(n.endswith(nameless["oaio_id"][-20:]) for n in names)        # no _name: its id
    obj = drive.path("Report⁄2024")
    assert sorted(os.listdir(obj)) == ["deep", "notes.txt", "values.json"]
    assert json.loads((obj / "values.json").read_text()) == {"_name": "Report/2024", "n": 1}
    assert (obj / "notes.txt").read_bytes() == b"hello\n"
    assert (obj / "deep/er/data.bin").read_bytes() == bytes(range(256)) * 1000
    st = os.stat(obj / "deep/er/data.bin")
    remote = server_file(api, doc["oaio_id"], "deep/er/data.bin")
    assert st.st_size == remote["size"] and abs(st.st_mtime - remote["mtime"]) < 1
    assert stat.S_IMODE(st.st_mode) == 0o644 and stat.S_IMODE(os.stat(obj).st_mode) == 0o755
    assert twin1["oaio_id"] != twin2["oaio_id"]


def test_writes_reach_the_server(live_server, user_api, mounted_drive):
    user, api = user_api
    doc = api.create_object({"_name": "W"})
    oid = doc["oaio_id"]
    api.put_file(oid, "log.txt", b"one\n")
    drive = mounted_drive(live_server, user)
    obj = drive.path("W")

    subprocess.run(f"echo two >> '{obj}/log.txt'", shell=True, check=True)      # append
    assert (obj / "log.txt").read_bytes() == b"one\ntwo\n"                          # read-your-writes
    payload = os.urandom(3 << 20)
    (obj / "big.bin").write_bytes(payload)
    os.makedirs(obj / "a/b")
    (obj / "a/b/c.txt").write_text("c")
    with open(obj / "synced.txt", "wb") as fh:                                    # fsync = in the journal
        fh.write(b"durable")
        fh.flush()
        os.fsync(fh.fileno())
        assert any(op["path"] == "synced.txt" for op in mount_status(drive.mountpoint)["ops"]) \
            or server_has(api, oid, "synced.txt", b"durable")                       # queued, or already sent
    wait_until(lambda: server_has(api, oid, "synced.txt", b"durable"), message="fsynced file uploaded")
    wait_until(lambda: server_has(api, oid, "log.txt", b"one\ntwo\n"), message="append uploaded")
    wait_until(lambda: server_has(api, oid, "big.bin", payload), message="big file uploaded")
    wait_until(lambda: server_has(api, oid, "a/b/c.txt", b"c"), message="nested file uploaded")
    assert (obj / "big.bin").read_bytes() == payload                              # after the upload too

    with open(obj / "big.bin", "r+b") as fh:                                      # truncate
        fh.truncate(10)
    wait_until(lambda: server_has(api, oid, "big.bin", payload[:10]), message="truncate uploaded")

    os.rename(obj / "a/b/c.txt", obj / "a/moved.txt")
    os.remove(obj / "log.txt")
    wait_until(lambda: {f["path"] for f in api.get_object(oid)["files"] if f["kind"] == "file"}
               == {"big.bin", "synced.txt", "a/moved.txt"}, message="rename + delete applied")
    assert sorted(os.listdir(obj)) == ["a", "big.bin", "synced.txt", "values.json"]


def test_a_file_written_sequentially_uploads_while_open_and_commits_at_close(live_server, user_api, mounted_drive):
    """Upload while writing: bytes go to the server before close, but nothing is committed until it."""
    user, api = user_api
    oid = api.create_object({"_name": "Stream"})["oaio_id"]
    drive = mounted_drive(live_server, user)
    payload = os.urandom(24 << 20)
    with open(drive.path("Stream") / "video.bin", "wb") as fh:
        for start in range(0, 16 << 20, 1 << 20):
            fh.write(payload[start:start + (1 << 20)])
        fh.flush()
        wait_until(lambda: any(u["offset"] >= 8 << 20 for u in server_uploads(live_server, oid, "video.bin")),
                   message="bytes streamed to the server while the file is open")
        assert server_file(api, oid, "video.bin") is None                       # not committed while open
        fh.write(payload[16 << 20:])
    wait_until(lambda: server_has(api, oid, "video.bin", payload), message="committed after close")
    uploads = server_uploads(live_server, oid, "video.bin")
    assert [u["completed"] for u in uploads] == [True]                          # the streamed upload, adopted


def test_objects_from_mkdir_and_rmdir(live_server, user_api, mounted_drive):
    user, api = user_api
    drive = mounted_drive(live_server, user)
    name = "My Docs (2026) & more"        # what people type: spaces and punctuation stay as they are
    os.mkdir(drive.path(name))
    assert name in os.listdir(drive.mountpoint)
    (drive.path(name) / "f.txt").write_bytes(b"x")
    with pytest.raises(OSError) as exc:
        drive.path("not-allowed.txt").write_bytes(b"x")
    assert exc.value.errno == errno.EPERM

    def fresh():
        return next((d for d in api.list_objects()[0] if d["values"].get("_name") == name), None)

    wait_until(lambda: fresh() and [f["path"] for f in fresh()["files"]] == ["f.txt"], message="object created")
    oid = fresh()["oaio_id"]
    assert name in os.listdir(drive.mountpoint)   # still the same folder once the server answered
    subprocess.run(["rm", "-r", str(drive.path(name))], check=True)
    assert not drive.path(name).exists()
    wait_until(lambda: fresh() is None, message="object deleted")
    with pytest.raises((NotFound, Gone)):
        api.get_object(oid)


def test_values_json_replace_and_refuse(live_server, user_api, mounted_drive, caplog):
    user, api = user_api
    oid = api.create_object({"_name": "V", "a": 1})["oaio_id"]
    drive = mounted_drive(live_server, user)
    values = drive.path("V", "values.json")
    values.write_text(json.dumps({"_name": "V", "a": 2, "b": [1, 2]}))
    wait_until(lambda: api.get_object(oid)["values"] == {"_name": "V", "a": 2, "b": [1, 2]},
               message="values replaced")
    version = api.get_object(oid)["version"]
    for bad in (b"{not json", b"[1, 2]", b'{"_name": 5}'):
        fd = os.open(values, os.O_WRONLY | os.O_TRUNC)
        os.write(fd, bad)
        with pytest.raises(OSError) as exc:
            os.close(fd)
        assert exc.value.errno == errno.EINVAL
    assert "values.json" in drive.log() and "refused" in drive.log()
    doc = api.get_object(oid)
    assert doc["values"] == {"_name": "V", "a": 2, "b": [1, 2]} and doc["version"] == version
    assert json.loads(values.read_text())["a"] == 2


def test_read_only_subscriber_gets_eacces(live_server, make_user, api_for, mounted_drive):
    owner, reader = make_user("owner"), make_user("reader")
    api = api_for(owner)
    oid = api.create_object({"_name": "Shared"})["oaio_id"]
    api.put_file(oid, "f.txt", b"original")
    api.set_subscription(oid, reader, "r")
    drive = mounted_drive(live_server, reader)
    obj = drive.path("Shared")
    assert stat.S_IMODE(os.stat(obj).st_mode) == 0o555
    assert stat.S_IMODE(os.stat(obj / "f.txt").st_mode) == 0o444
    assert (obj / "f.txt").read_bytes() == b"original"
    attempts = [lambda: open(obj / "f.txt", "ab").close(), lambda: (obj / "new.txt").write_bytes(b"x"),
                lambda: os.remove(obj / "f.txt"), lambda: os.mkdir(obj / "d"),
                lambda: (obj / "values.json").write_text("{}"), lambda: os.rmdir(obj),
                lambda: os.truncate(obj / "f.txt", 0)]
    for attempt in attempts:
        with pytest.raises(OSError) as exc:
            attempt()
        assert exc.value.errno == errno.EACCES, attempt
    doc = api.get_object(oid)
    assert [f["path"] for f in doc["files"]] == ["f.txt"] and api.get_file(oid, "f.txt") == b"original"
    assert doc["values"] == {"_name": "Shared"}
    assert sha256(b"original") == doc["files"][0]["sha256"]


def test_values_editor_save_and_object_rename(live_server, user_api, mounted_drive):
    user, api = user_api
    oid = api.create_object({"_name": "Cfg", "x": 1})["oaio_id"]
    drive = mounted_drive(live_server, user)
    tmp = drive.path("Cfg", ".values.json.tmp")
    tmp.write_text(json.dumps({"_name": "Cfg", "x": 2}))
    os.replace(tmp, drive.path("Cfg", "values.json"))
    assert json.loads(drive.path("Cfg", "values.json").read_text())["x"] == 2
    assert not tmp.exists()
    wait_until(lambda: api.get_object(oid)["values"] == {"_name": "Cfg", "x": 2}
               and not api.get_object(oid)["files"], message="values saved by rename")
    bad = drive.path("Cfg", "bad.tmp")
    bad.write_text("[]")
    with pytest.raises(OSError) as exc:
        os.replace(bad, drive.path("Cfg", "values.json"))
    assert exc.value.errno == errno.EINVAL

    os.rename(drive.path("Cfg"), drive.path("Settings"))              # renaming the folder = _name
    assert drive.path("Settings", "values.json").exists() and not drive.path("Cfg").exists()
    wait_until(lambda: api.get_object(oid)["values"]["_name"] == "Settings", message="_name changed")
    with pytest.raises(OSError) as exc:
        os.rename(drive.path("Settings", "bad.tmp"), drive.path("Elsewhere.tmp"))
    assert exc.value.errno == errno.EPERM
