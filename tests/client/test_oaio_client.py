"""OaioClient against the real server process: two users, two devices, sharing, conflicts,
offline edits, deletion propagation, files, hostile paths, two processes on one root."""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from pathlib import Path
from typing import Callable

import pytest

from oaiofs.client.api import ApiClient
from oaiofs.client.oaio_client import OaioClient
from oaiofs.errors import VersionConflict

from tests.conftest import PASSWORD, ServerProcess, wait_until


def connect(server: ServerProcess, user: str, root: Path, device: str, password: str = PASSWORD) -> OaioClient:
    """An OaioClient for ``user`` on its own device folder ``root``."""
    return OaioClient(f"127.0.0.1:{server.port}", {"username": user, "password": password}, app_id="tests",
                      device_id=device, client_root=str(root))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def pair(live_server: ServerProcess, make_user: Callable[[str], str], tmp_path: Path):
    """Alice on two devices and Bob on one, all on the shared server."""
    alice, bob = make_user("alice"), make_user("bob")
    a1 = connect(live_server, alice, tmp_path / "alice-d1", "d1")
    a2 = connect(live_server, alice, tmp_path / "alice-d2", "d2")
    b1 = connect(live_server, bob, tmp_path / "bob-d1", "bd1")
    yield a1, a2, b1
    for client in (a1, a2, b1):
        client.close()


def test_register_update_sync_round_trip(pair, tmp_path: Path) -> None:
    a1, a2, b1 = pair
    obj = a1.register_object({"title": "groceries", "items": ["milk"]})
    assert obj is not None and obj.server_version == 1, a1.error_message
    assert a2.synchronize_with_server_if_online(), a2.error_message
    assert a2.client_objectz[obj.oaio_id].client_values == {"title": "groceries", "items": ["milk"]}
    assert a2.update_object(obj.oaio_id, {"items": ["milk", "eggs"]}) is not None
    assert a1.synchronize_with_server_if_online(), a1.error_message
    assert a1.client_objectz[obj.oaio_id].client_values["items"] == ["milk", "eggs"]
    assert a1.update_object(obj.oaio_id, {"new": 1}, reset=True).client_values == {"new": 1}
    assert a2.synchronize_with_server_if_online() and a2.client_objectz[obj.oaio_id].client_values == {"new": 1}
    assert obj.oaio_id not in b1.client_objectz
    assert b1.synchronize_with_server_if_online() and obj.oaio_id not in b1.client_objectz   # not shared yet
    assert a1.last_sync_stamp > "2023" and (a1.client_root / "last_sync_stamp.txt").read_text() == a1.last_sync_stamp
    assert a1.error_message == ""


@pytest.mark.parametrize("right", ["r", "U", "D"])
def test_sharing_rights_seen_through_return_values(pair, right: str) -> None:
    a1, _a2, b1 = pair
    obj = a1.register_object({"k": "alice"})
    pid = a1.upsert_subscription(obj.oaio_id, b1.user_name, right)
    assert pid > 0, a1.error_message
    assert b1.synchronize_with_server_if_online(), b1.error_message
    mine = b1.client_objectz[obj.oaio_id]
    assert mine.csh_access_right == right and mine.client_values == {"k": "alice"}
    everyone = a1.userz_access(obj.oaio_id)
    assert everyone[0] == {"username": a1.user_name, "access_right": "C"}
    assert {"username": b1.user_name, "access_right": right} in everyone
    assert everyone == sorted(everyone, key=lambda e: e["access_right"] + e["username"])
    assert {"username": b1.user_name, "access_right": "x"} in a1.userz_access("")   # seed: all users, no right

    # nobody but the creator manages other users' subscriptions
    assert b1.upsert_subscription(obj.oaio_id, a1.user_name, "r") == 0
    assert "creator" in b1.error_message
    b1.error_message = ""

    updated = b1.update_object(obj.oaio_id, {"k": "bob"})
    if right == "r":
        assert updated is None and "does not allow to update" in b1.error_message
    else:
        assert updated is not None and updated.client_values == {"k": "bob"}, b1.error_message
    b1.error_message = ""

    result = b1.unregister_object(obj.oaio_id)
    if right == "D":
        assert result == "" and obj.oaio_id not in b1.client_objectz
        assert a1.synchronize_with_server_if_online(), a1.error_message
        assert obj.oaio_id not in a1.client_objectz        # deletion propagated to the creator
    else:
        assert "does not allow to delete" in result
        assert a1.synchronize_with_server_if_online()
        assert a1.client_objectz[obj.oaio_id].client_values == {"k": "alice" if right == "r" else "bob"}


def test_right_lowered_while_offline_edit_is_kept_as_copy(server_factory, tmp_path: Path) -> None:
    server = server_factory()
    alice, bob = server.add_user("alice"), server.add_user("bob")
    a1, b1 = connect(server, alice, tmp_path / "a", "d1"), connect(server, bob, tmp_path / "b", "bd")
    obj = a1.register_object({"_name": "plan", "k": 1})
    a1.upsert_subscription(obj.oaio_id, bob, "U")
    assert b1.synchronize_with_server_if_online()
    server.stop()
    assert b1.update_object(obj.oaio_id, {"k": "bob offline"}) is not None
    server.start()
    assert a1.upsert_subscription(obj.oaio_id, bob, "r") > 0
    b1.error_message = ""
    assert b1.synchronize_with_server_if_online(), b1.error_message
    assert "refused the local change" in b1.error_message
    assert b1.client_objectz[obj.oaio_id].client_values == {"_name": "plan", "k": 1}
    copies = [o for i, o in b1.client_objectz.items() if i != obj.oaio_id]
    assert len(copies) == 1 and copies[0].client_values["k"] == "bob offline" and copies[0].server_version > 0
    assert copies[0].client_values["_name"].startswith("plan (conflict ")


def test_stale_update_gets_409_and_both_versions_are_kept(pair, live_server: ServerProcess) -> None:
    a1, a2, _b1 = pair
    obj = a1.register_object({"same": 0, "a": 0, "b": 0})
    assert a2.synchronize_with_server_if_online()
    base = a1.client_objectz[obj.oaio_id].server_version
    assert a2.update_object(obj.oaio_id, {"same": "d2", "b": 2}) is not None
    # the server really refuses an update based on a1's (now stale) version
    with ApiClient(live_server.url, a1.user_name, PASSWORD) as raw, pytest.raises(VersionConflict) as err:
        raw.update_values(obj.oaio_id, {"x": 1}, base_version=base)
    assert err.value.http_status == 409
    a1.error_message = ""
    updated = a1.update_object(obj.oaio_id, {"same": "d1", "a": 1})
    assert updated is not None and "conflict, both versions kept" in a1.error_message
    values = updated.client_values
    assert values["a"] == 1 and values["b"] == 2 and values["same"] == "d2"
    kept = [v for k, v in values.items() if k.startswith("same (conflict ") and "@d1 " in k]
    assert kept == ["d1"]
    assert a2.synchronize_with_server_if_online() and a2.client_objectz[obj.oaio_id].client_values == values


def test_file_edited_on_two_devices_keeps_both(pair) -> None:
    a1, a2, _b1 = pair
    obj = a1.register_file("notes.txt", b"original\n")
    assert a2.synchronize_with_server_if_online()
    assert a2.update_file(obj.oaio_id, file_content=b"edited on d2\n") is not None
    assert a1.update_file(obj.oaio_id, file_content=b"edited on d1\n") is not None     # stale: 409 inside
    assert "conflict, both versions kept" in a1.error_message
    assert a2.synchronize_with_server_if_online(), a2.error_message
    for client in (a1, a2):
        root = client.files_root(obj.oaio_id)
        files = tree_hashes(root)
        assert (root / "notes.txt").read_bytes() == b"edited on d2\n"
        copies = [p for p in files if p.startswith("notes (conflict ") and p.endswith(".txt")]
        assert len(copies) == 1 and (root / copies[0]).read_bytes() == b"edited on d1\n"
        assert copies[0] in client.client_objectz[obj.oaio_id].client_values["_file_paths"]


def test_offline_edits_are_kept_and_pushed_when_back(server_factory, tmp_path: Path) -> None:
    server = server_factory()
    alice = server.add_user("alice")
    a1, a2 = connect(server, alice, tmp_path / "d1", "d1"), connect(server, alice, tmp_path / "d2", "d2")
    obj = a1.register_object({"n": 1})
    doc = a1.register_file("a.txt", b"one")
    server.stop()
    assert a1.update_object(obj.oaio_id, {"n": 2}) is not None
    new = a1.register_object({"made": "offline"})
    assert new is not None and new.server_version == 0            # the seed returned None here
    assert a1.update_file(doc.oaio_id, file_content=b"two, offline") is not None
    assert "unreachable" in a1.error_message
    assert not a1.synchronize_with_server_if_online()
    old_stamp = a1.last_sync_stamp
    reopened = connect(server, alice, tmp_path / "d1", "d1")      # a new process keeps the queued edits
    assert reopened.client_objectz[obj.oaio_id].client_values == {"n": 2}
    server.start()
    reopened.error_message = ""
    assert reopened.synchronize_with_server_if_online(), reopened.error_message
    assert reopened.last_sync_stamp > old_stamp
    assert a2.synchronize_with_server_if_online(), a2.error_message
    objz = a2.client_objectz
    assert objz[obj.oaio_id].client_values == {"n": 2} and objz[new.oaio_id].client_values == {"made": "offline"}
    assert (a2.files_root(doc.oaio_id) / "a.txt").read_bytes() == b"two, offline"


def test_deletion_and_unsubscription_propagate(server_factory, tmp_path: Path) -> None:
    server = server_factory()
    alice, bob = server.add_user("alice"), server.add_user("bob")
    a1, b1 = connect(server, alice, tmp_path / "a", "d1"), connect(server, bob, tmp_path / "b", "bd")
    gone = a1.register_file("f.bin", os.urandom(5000))
    unshared = a1.register_object({"v": 1})
    edited = a1.register_object({"w": 1})
    for obj in (gone, unshared, edited):
        assert a1.upsert_subscription(obj.oaio_id, bob, "U") > 0
    assert b1.synchronize_with_server_if_online(), b1.error_message
    gone_files = b1.files_root(gone.oaio_id)
    assert (gone_files / "f.bin").is_file()
    server.stop()
    assert b1.update_object(edited.oaio_id, {"w": "bob's offline edit"}) is not None
    server.start()
    assert a1.unregister_object(gone.oaio_id, wipe_files=True) == ""
    assert a1.unsubscribe(unshared.oaio_id, bob) == ""
    assert a1.unregister_object(edited.oaio_id) == ""
    b1.error_message = ""
    assert b1.synchronize_with_server_if_online(), b1.error_message
    objz = b1.client_objectz
    assert gone.oaio_id not in objz and unshared.oaio_id not in objz and edited.oaio_id not in objz
    assert not gone_files.exists()
    copies = [o for o in objz.values() if o.client_values.get("w") == "bob's offline edit"]
    assert len(copies) == 1 and copies[0].username == bob and copies[0].server_version > 0
    # unsubscribing oneself removes the object from one's own device too
    mine = a1.register_object({"x": 1})
    a1.upsert_subscription(mine.oaio_id, bob, "r")
    assert b1.synchronize_with_server_if_online() and mine.oaio_id in b1.client_objectz
    assert b1.unsubscribe(mine.oaio_id, bob) == ""
    assert mine.oaio_id not in b1.client_objectz
    assert b1.synchronize_with_server_if_online() and mine.oaio_id not in b1.client_objectz


def test_files_and_folders_round_trip_byte_identical(pair, tmp_path: Path) -> None:
    a1, _a2, b1 = pair
    folder = tmp_path / "photos"
    (folder / "2024" / "summer").mkdir(parents=True)
    (folder / "2024" / "summer" / "beach.raw").write_bytes(os.urandom(6 * 1024 * 1024 + 123))   # > one tus chunk
    (folder / "2024" / "notes ü.txt").write_text("unicode name\n")
    (folder / ".hidden").write_bytes(b"")
    folder_obj = a1.register_folder(str(folder))
    assert folder_obj is not None, a1.error_message
    assert folder_obj.client_values["_file_paths"] == [".hidden", "2024/notes ü.txt", "2024/summer/beach.raw"]
    file_obj = a1.register_file("doc.bin", os.urandom(70_000))
    for obj in (folder_obj, file_obj):
        assert a1.upsert_subscription(obj.oaio_id, b1.user_name, "r") > 0
    assert b1.synchronize_with_server_if_online(), b1.error_message
    bob_folder = b1.files_root(folder_obj.oaio_id)
    assert bob_folder == b1.client_root / "filez" / folder_obj.oaio_id      # never the sender's _root_path
    assert tree_hashes(bob_folder) == tree_hashes(folder)
    assert tree_hashes(b1.files_root(file_obj.oaio_id)) == tree_hashes(a1.files_root(file_obj.oaio_id))
    server_doc = b1.api.get_object(folder_obj.oaio_id)
    assert {f["path"]: f["sha256"] for f in server_doc["files"] if f["kind"] == "file"} == tree_hashes(folder)
    # a folder change (one file removed, one added, one changed) propagates
    (folder / "2024" / "notes ü.txt").unlink()
    (folder / "new.txt").write_text("new")
    (folder / ".hidden").write_bytes(b"now with content")
    assert a1.update_folder(folder_obj.oaio_id) is not None, a1.error_message
    assert b1.synchronize_with_server_if_online(), b1.error_message
    assert tree_hashes(bob_folder) == tree_hashes(folder)
    # unregister with wipe_files never deletes the user's own folder
    assert a1.unregister_object(folder_obj.oaio_id, wipe_files=True) == ""
    assert (folder / "new.txt").read_text() == "new"
    assert b1.synchronize_with_server_if_online() and not bob_folder.exists()


def test_hostile_paths_from_the_server_are_refused(pair, live_server: ServerProcess, tmp_path: Path) -> None:
    a1, _a2, b1 = pair
    outside = tmp_path / "outside"
    outside.mkdir()
    with ApiClient(live_server.url, a1.user_name, PASSWORD) as raw:     # a hostile (or buggy) other client
        doc = raw.create_object({"_root_path": str(outside), "_file_paths": ["../../escape.txt", "sub/x.txt"]})
        raw.put_file(doc["oaio_id"], "sub/x.txt", b"payload")
        raw.put_file(doc["oaio_id"], "ok.txt", b"fine")
        raw.set_subscription(doc["oaio_id"], b1.user_name, "r")
    # bob's folder for this object already holds a symlink 'sub' leading outside client_root
    bob_root = b1.client_root / "filez" / doc["oaio_id"]
    bob_root.mkdir(parents=True)
    (bob_root / "sub").symlink_to(outside, target_is_directory=True)
    assert not b1.synchronize_with_server_if_online()
    assert "outside its root folder" in b1.error_message or "symbolic link" in b1.error_message
    assert list(outside.iterdir()) == [] and not (tmp_path / "escape.txt").exists()
    # the refused object did not block the rest; once the link is gone, the file arrives inside client_root
    (bob_root / "sub").unlink()
    b1.error_message = ""
    wait_until(b1.synchronize_with_server_if_online, timeout=10, message=b1.error_message)
    assert (bob_root / "sub" / "x.txt").read_bytes() == b"payload" and (bob_root / "ok.txt").read_bytes() == b"fine"
    assert list(outside.iterdir()) == []


def _worker(url_port: int, user: str, root: str, tag: str, count: int, shared_id: str) -> None:
    client = OaioClient(f"127.0.0.1:{url_port}", {"username": user, "password": PASSWORD}, app_id="mp",
                        device_id="same-device", client_root=root)
    for i in range(count):
        assert client.register_object({"_name": f"{tag}-{i}", "i": i}) is not None, client.error_message
        assert client.update_object(shared_id, {f"{tag}-{i}": i}) is not None, client.error_message
    client.close()


def test_two_processes_share_one_client_root(live_server: ServerProcess, make_user, tmp_path: Path) -> None:
    user = make_user("mp")
    root = tmp_path / "shared-root"
    client = connect(live_server, user, root, "same-device")
    shared = client.register_object({"start": True})
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(live_server.port, user, str(root), tag, 6, shared.oaio_id))
             for tag in ("p1", "p2")]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(240)
        assert proc.exitcode == 0
    for record in (root / "objz").glob("*.json"):
        json.loads(record.read_text("utf-8"))                       # every record is whole, valid JSON
    assert list((root / "quarantine").iterdir()) == []
    assert client.synchronize_with_server_if_online(), client.error_message
    objz = client.client_objectz
    names = {o.client_values.get("_name") for o in objz.values()}
    assert {f"{t}-{i}" for t in ("p1", "p2") for i in range(6)} <= names
    expected = {"start": True, **{f"{t}-{i}": i for t in ("p1", "p2") for i in range(6)}}
    assert objz[shared.oaio_id].client_values == expected
    assert client.api.get_object(shared.oaio_id)["values"] == expected
    assert len(client.api.list_objects()[0]) == 13


def test_password_never_in_messages_and_never_mangled(server_factory, tmp_path: Path) -> None:
    server = server_factory()
    alice = server.add_user("alice")
    wrong = "wrong-" + PASSWORD
    credentials = {"username": alice, "password": wrong}
    client = OaioClient(f"127.0.0.1:{server.port}", credentials, device_id="d", client_root=str(tmp_path / "w"))
    assert client.register_object({"k": 1}) is not None
    assert not client.synchronize_with_server_if_online()
    assert client.error_message and wrong not in client.error_message and PASSWORD not in client.error_message
    assert credentials == {"username": alice, "password": wrong}          # the seed masked it in place
    good = connect(server, alice, tmp_path / "g", "d")
    server.stop()
    assert not good.synchronize_with_server_if_online() and "unreachable" in good.error_message
    assert PASSWORD not in good.error_message and PASSWORD not in repr(good) and PASSWORD not in repr(good.api)
    server.start()
    good.error_message = ""
    assert good.synchronize_with_server_if_online(), good.error_message     # the password still works


def test_corrupt_local_record_is_quarantined_and_sync_goes_on(pair) -> None:
    a1, _a2, _b1 = pair
    obj = a1.register_object({"k": 1})
    other = a1.register_object({"k": 2})
    record = a1.client_root / "objz" / f"{obj.oaio_id}.json"
    record.write_text('{"oaio_id": "half a reco')
    fresh = OaioClient(a1.api.base_url, {"username": a1.user_name, "password": PASSWORD}, device_id="d1",
                       client_root=str(a1.client_root))
    assert "corrupt local record" in fresh.error_message and "quarantine" in fresh.error_message
    assert fresh.synchronize_with_server_if_online()
    # the server still had it: it comes back whole, and the other record was untouched
    assert fresh.client_objectz[obj.oaio_id].client_values == {"k": 1}
    assert fresh.client_objectz[other.oaio_id].client_values == {"k": 2}
    assert len(list((a1.client_root / "quarantine").iterdir())) == 1


def _upload_then_die(port: int, user: str, root: str, content_file: str) -> None:
    """Register a file, and die (like a crash) right after its second tus chunk reached the server."""
    from oaiofs.client import uploads
    from oaiofs.protocol import CHUNK_UNIT

    real_send = uploads.TusUploader.send_chunk
    sent = []

    def send_then_die(self, url, offset, data, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = real_send(self, url, offset, data, *args, **kwargs)
        sent.append(len(data))
        if len(sent) == 2:
            os._exit(17)
        return result

    uploads.TusUploader.send_chunk = send_then_die  # type: ignore[method-assign]
    api = ApiClient(f"http://127.0.0.1:{port}", user, PASSWORD)
    client = OaioClient(f"127.0.0.1:{port}", {"username": user, "password": PASSWORD}, device_id="crashy",
                        client_root=root, api=api, uploader=uploads.TusUploader(api, chunk_size=CHUNK_UNIT))
    client.register_file("big.bin", Path(content_file).read_bytes())
    raise SystemExit("the upload finished although it should have been cut")


def test_interrupted_upload_resumes_in_a_new_process(pair, live_server: ServerProcess, tmp_path: Path) -> None:
    from oaiofs.client.uploads import TusUploader
    from oaiofs.protocol import CHUNK_UNIT

    a1, _a2, b1 = pair
    content = tmp_path / "big.bin"
    content.write_bytes(os.urandom(4 * CHUNK_UNIT + 999))
    root = tmp_path / "crash-root"
    proc = mp.get_context("spawn").Process(target=_upload_then_die,
                                           args=(live_server.port, a1.user_name, str(root), str(content)))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 17
    api = ApiClient(live_server.url, a1.user_name, PASSWORD)
    uploader = TusUploader(api, chunk_size=CHUNK_UNIT)
    again = OaioClient(live_server.url, {"username": a1.user_name, "password": PASSWORD}, device_id="crashy",
                       client_root=str(root), api=api, uploader=uploader)
    (obj,) = again.client_objectz.values()
    pending = obj.uploads["big.bin"]
    # URL and progress were on disk; the crash came before the 2nd chunk's progress was saved
    assert pending["url"] and pending["offset"] == CHUNK_UNIT
    assert again.synchronize_with_server_if_online(), again.error_message
    # the server's offset (2 chunks) wins over the saved lower bound: only the rest is sent
    assert uploader.bytes_sent == content.stat().st_size - 2 * CHUNK_UNIT
    assert again.client_objectz[obj.oaio_id].uploads == {}
    assert again.upsert_subscription(obj.oaio_id, b1.user_name, "r") > 0
    assert b1.synchronize_with_server_if_online(), b1.error_message
    assert sha(b1.files_root(obj.oaio_id) / "big.bin") == sha(content)


def test_a_server_with_a_new_database_is_listed_again(server_factory, tmp_path: Path) -> None:
    first = server_factory()
    alice = first.add_user("alice")
    client = connect(first, alice, tmp_path / "dev", "d1")
    old = client.register_object({"on": "the old database"})
    for i in range(3):
        client.update_object(old.oaio_id, {"i": i})               # moves the feed cursor along
    first.stop()
    fresh = server_factory(port=first.port)                       # same URL, empty database
    fresh.add_user(alice)
    with ApiClient(fresh.url, alice, PASSWORD) as raw:
        new_doc = raw.create_object({"on": "the new database"})
    client.error_message = ""
    # the saved cursor is ahead of the new feed: the client notices and lists everything
    assert client.synchronize_with_server_if_online(), client.error_message
    objz = client.client_objectz
    assert new_doc["oaio_id"] in objz
    assert old.oaio_id not in objz          # synced, unchanged and unknown to the server: it vanished


def _modes_and_times(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_mode & 0o777, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def test_folders_keep_mtimes_and_exec_bits_and_links_arrive_confined(pair, live_server: ServerProcess,
                                                                       tmp_path: Path) -> None:
    a1, _a2, b1 = pair
    folder = tmp_path / "proj"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(folder / "bin" / "run.sh", 0o755)
    (folder / "data.txt").write_text("data")
    os.utime(folder / "data.txt", ns=(0, 1_500_000_000_123_456_789))
    obj = a1.register_folder(str(folder))
    assert obj is not None, a1.error_message
    assert a1.upsert_subscription(obj.oaio_id, b1.user_name, "r") > 0
    assert b1.synchronize_with_server_if_online(), b1.error_message
    bob_folder = b1.files_root(obj.oaio_id)
    assert _modes_and_times(bob_folder) == _modes_and_times(folder)
    # chmod/touch only: a metadata call, the same bytes are not sent again
    sent_before = {f["path"]: f["version"] for f in a1.api.get_object(obj.oaio_id)["files"]}
    os.chmod(folder / "data.txt", 0o700)
    os.utime(folder / "bin" / "run.sh", ns=(0, 1_000_000_000_000_000_001))
    assert a1.update_folder(obj.oaio_id) is not None, a1.error_message
    after = {f["path"]: f for f in a1.api.get_object(obj.oaio_id)["files"]}
    assert {p: f["version"] for p, f in after.items()} == sent_before
    assert after["data.txt"]["mode"] == 0o700 and after["bin/run.sh"]["mtime_ns"] == 1_000_000_000_000_000_001
    assert b1.synchronize_with_server_if_online(), b1.error_message
    assert _modes_and_times(bob_folder) == _modes_and_times(folder)
    # links from the server: created when they stay inside client_root, refused otherwise
    with ApiClient(live_server.url, a1.user_name, PASSWORD) as raw:
        raw.make_link(obj.oaio_id, "bin/data", "../data.txt")
        raw.make_link(obj.oaio_id, "evil", "../../../../../../etc/passwd")
        raw.make_link(obj.oaio_id, "abs", "/etc/passwd")
    assert not b1.synchronize_with_server_if_online()
    assert "outside client_root" in b1.error_message, b1.error_message
    assert os.readlink(bob_folder / "bin" / "data") == "../data.txt"
    assert (bob_folder / "bin" / "data").read_text() == "data"
    assert not os.path.lexists(bob_folder / "evil") and not os.path.lexists(bob_folder / "abs")
