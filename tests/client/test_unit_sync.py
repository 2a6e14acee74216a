"""Unit tests of OaioClient's sync logic against an in-memory fake server (one layer only).

The same behaviours are proven against the real server in test_oaio_client.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from oaiofs.client import batch_push
from oaiofs.client.oaio_client import OaioClient, base_url_of
from oaiofs.errors import Unavailable

from tests.fakeserver import BatchingFakeApi as FakeApi, FakeDownloader, FakeServer, FakeUploader

PASSWORD = "s3cret-password"


def make_client(server: FakeServer, user: str, root: Path, device: str = "dev1", **kw: object) -> OaioClient:
    api = FakeApi(server, user)
    return OaioClient("127.0.0.1:1", {"username": user, "password": PASSWORD}, app_id="app", device_id=device,
                      client_root=str(root), api=api, uploader=FakeUploader(api),
                      downloader=kw.get("downloader") or FakeDownloader(api))


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


def test_base_url_of() -> None:
    assert base_url_of("127.0.0.1:8470") == "http://127.0.0.1:8470"
    assert base_url_of("localhost:1") == "http://localhost:1"
    assert base_url_of("oaio.example.org") == "https://oaio.example.org"
    assert base_url_of("http://h:5/") == "http://h:5"


def test_register_offline_returns_object_and_pushes_later(server: FakeServer, tmp_path: Path) -> None:
    server.online = False
    client = make_client(server, "alice", tmp_path / "a")
    obj = client.register_object({"k": 1}, oaio_id="obj1")
    assert obj is not None and obj.oaio_id == "obj1" and obj.server_version == 0
    assert "unreachable" in client.error_message
    server.online = True
    client.error_message = ""
    assert client.synchronize_with_server_if_online(), client.error_message
    assert server.objects["obj1"]["values"] == {"k": 1}
    assert client.client_objectz["obj1"].server_version == 1


def test_values_conflict_merges_and_keeps_both(server: FakeServer, tmp_path: Path) -> None:
    alice = make_client(server, "alice", tmp_path / "a", "d1")
    alice2 = make_client(server, "alice", tmp_path / "a2", "d2")
    alice.register_object({"same": 0, "a": 0, "b": 0}, oaio_id="o")
    assert alice2.synchronize_with_server_if_online()
    server.online = False
    alice.update_object("o", {"a": 1, "same": "from d1"})
    server.online = True
    alice2.update_object("o", {"b": 2, "same": "from d2"})
    alice.error_message = ""
    assert alice.synchronize_with_server_if_online(), alice.error_message
    values = server.objects["o"]["values"]
    assert values["a"] == 1 and values["b"] == 2 and values["same"] == "from d2"
    kept = {k: v for k, v in values.items() if k.startswith("same (conflict alice@d1 ")}
    assert list(kept.values()) == ["from d1"]
    assert alice.sync_report.conflicts
    assert alice.client_objectz["o"].client_values == values


def test_file_conflict_keeps_local_copy(server: FakeServer, tmp_path: Path) -> None:
    alice = make_client(server, "alice", tmp_path / "a", "d1")
    bob = make_client(server, "bob", tmp_path / "b", "d2")
    obj = alice.register_file("doc.txt", b"v1")
    server.objects[obj.oaio_id]["subs"]["bob"] = "U"
    assert bob.synchronize_with_server_if_online(), bob.error_message
    server.online = False
    assert alice.update_file(obj.oaio_id, file_content=b"alice edit") is not None
    server.online = True
    assert bob.update_file(obj.oaio_id, file_content=b"bob edit") is not None
    alice.error_message = ""
    assert alice.synchronize_with_server_if_online(), alice.error_message
    files = server.objects[obj.oaio_id]["files"]
    assert files["doc.txt"]["data"] == b"bob edit"
    copies = [p for p in files if p.startswith("doc (conflict alice@d1 ")]
    assert len(copies) == 1 and files[copies[0]]["data"] == b"alice edit"
    root = alice.files_root(obj.oaio_id)
    assert (root / "doc.txt").read_bytes() == b"bob edit"
    assert (root / copies[0]).read_bytes() == b"alice edit"
    assert copies[0] in server.objects[obj.oaio_id]["values"]["_file_paths"]


def test_read_only_may_not_update_or_delete(server: FakeServer, tmp_path: Path) -> None:
    alice = make_client(server, "alice", tmp_path / "a")
    bob = make_client(server, "bob", tmp_path / "b")
    alice.register_object({"k": 1}, oaio_id="o")
    assert alice.upsert_subscription("o", "bob", "r") == 1
    assert bob.synchronize_with_server_if_online()
    assert bob.update_object("o", {"k": 2}) is None
    assert "does not allow to update" in bob.error_message
    assert "does not allow to delete" in bob.unregister_object("o")
    assert server.objects["o"]["values"] == {"k": 1}


def test_refused_edit_is_kept_as_own_copy(server: FakeServer, tmp_path: Path) -> None:
    alice = make_client(server, "alice", tmp_path / "a")
    bob = make_client(server, "bob", tmp_path / "b", "bd")
    alice.register_object({"k": 1, "_name": "n"}, oaio_id="o")
    alice.upsert_subscription("o", "bob", "U")
    assert bob.synchronize_with_server_if_online()
    server.online = False
    bob.update_object("o", {"k": "bob offline"})
    server.online = True
    alice.upsert_subscription("o", "bob", "r")          # right lowered while bob was offline
    assert bob.synchronize_with_server_if_online(), bob.error_message
    assert server.objects["o"]["values"] == {"k": 1, "_name": "n"}
    copies = [o for i, o in server.objects.items() if i != "o"]
    assert len(copies) == 1 and copies[0]["owner"] == "bob" and copies[0]["values"]["k"] == "bob offline"
    assert bob.client_objectz["o"].client_values == {"k": 1, "_name": "n"}


def test_deleted_and_unshared_objects_vanish_keeping_dirty_edits(server: FakeServer, tmp_path: Path) -> None:
    alice = make_client(server, "alice", tmp_path / "a")
    bob = make_client(server, "bob", tmp_path / "b", "bd")
    f = alice.register_file("f.txt", b"data")
    alice.register_object({"v": 1}, oaio_id="o2")
    for oid in (f.oaio_id, "o2"):
        alice.upsert_subscription(oid, "bob", "U")
    assert bob.synchronize_with_server_if_online(), bob.error_message
    bob_files = bob.files_root(f.oaio_id)
    assert (bob_files / "f.txt").read_bytes() == b"data"
    server.online = False
    bob.update_object("o2", {"v": "bob"})
    server.online = True
    assert alice.unregister_object(f.oaio_id) == ""
    assert alice.unsubscribe("o2", "bob") == ""
    assert bob.synchronize_with_server_if_online(), bob.error_message
    objz = bob.client_objectz
    assert f.oaio_id not in objz and "o2" not in objz and not bob_files.exists()
    copies = [o for o in objz.values() if o.client_values.get("v") == "bob"]
    assert len(copies) == 1 and copies[0].server_version > 0     # pushed as bob's own object


def test_hostile_server_paths_are_refused(server: FakeServer, tmp_path: Path) -> None:
    alice = make_client(server, "alice", tmp_path / "a")
    bob = make_client(server, "bob", tmp_path / "b")
    outside = tmp_path / "outside"
    alice.register_object({"_root_path": str(outside), "_file_paths": ["../evil"]}, oaio_id="o")
    obj = server.objects["o"]
    obj["subs"]["bob"] = "r"
    for bad in ("../evil.txt", "/abs/evil.txt", "ok.txt"):
        obj["files"][bad] = {"kind": "file", "size": 1, "sha256": "0" * 64, "version": 1, "stamp": "", "mtime": 1.0,
                             "data": b"x"}
    obj["files"]["ok.txt"] = {**obj["files"]["ok.txt"],
                              "sha256": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"}
    assert not bob.synchronize_with_server_if_online()
    assert bob.error_message.count("refused file path") == 2
    assert not outside.exists() and not (tmp_path / "evil.txt").exists()
    assert (bob.files_root("o") / "ok.txt").read_bytes() == b"x"
    assert bob.files_root("o") == tmp_path / "b" / "filez" / "o"


def test_corrupt_download_is_not_installed(server: FakeServer, tmp_path: Path) -> None:
    alice = make_client(server, "alice", tmp_path / "a")
    alice.register_file("f.txt", b"good")
    oid = next(iter(server.objects))
    server.objects[oid]["subs"]["bob"] = "r"
    api = FakeApi(server, "bob")
    bob = make_client(server, "bob", tmp_path / "b", downloader=FakeDownloader(api, corrupt=True))
    assert not bob.synchronize_with_server_if_online()
    assert "sha256" in bob.error_message
    assert not (tmp_path / "b" / "filez" / oid / "f.txt").exists()


def test_wipe_files_never_touches_user_folder(server: FakeServer, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "x.txt").write_text("x")
    alice = make_client(server, "alice", tmp_path / "a")
    obj = alice.register_folder(str(folder))
    assert obj is not None and obj.client_values["_file_paths"] == ["sub/x.txt"]
    assert alice.unregister_object(obj.oaio_id, wipe_files=True) == ""
    assert (folder / "sub" / "x.txt").read_text() == "x"
    assert server.objects[obj.oaio_id]["deleted"]


def test_upload_url_is_persisted_for_resume(server: FakeServer, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(batch_push, "SMALL_FILE_BYTES", 0)        # every file takes the (resumable) tus path
    alice = make_client(server, "alice", tmp_path / "a")
    seen = []

    class Interrupted(FakeUploader):
        def upload_file(self, local_path, oaio_id, path, *, url=None, on_url=None, **kw):  # type: ignore[override]
            if not seen:
                seen.append(url)
                on_url("fake://upload/1")
                raise Unavailable("server is unreachable (cut mid-upload)")
            seen.append(url)
            return super().upload_file(local_path, oaio_id, path, url=url, on_url=on_url, **kw)

    alice._sync.uploader = Interrupted(alice.api)
    assert alice.register_file("big.bin", b"x" * 1000) is not None
    assert "cut mid-upload" in alice.error_message
    again = make_client(server, "alice", tmp_path / "a")      # a new process on the same root
    obj = next(iter(again.client_objectz.values()))
    assert obj.uploads["big.bin"]["url"] == "fake://upload/1"
    again._sync.uploader = Interrupted(again.api)
    assert again.synchronize_with_server_if_online(), again.error_message
    assert seen == [None, "fake://upload/1"]


def test_error_message_masks_password(server: FakeServer, tmp_path: Path) -> None:
    client = make_client(server, "alice", tmp_path / "a")
    client.error_message = f"login with {PASSWORD} failed"
    assert PASSWORD not in client.error_message and "********" in client.error_message
    client.error_message = ""
    assert client.error_message == ""


def test_userz_access_sorted_like_seed(server: FakeServer, tmp_path: Path) -> None:
    alice = make_client(server, "alice", tmp_path / "a")
    for name in ("zed", "bob", "carl"):
        FakeApi(server, name)
    alice.register_object({}, oaio_id="o")
    alice.upsert_subscription("o", "zed", "U")
    alice.upsert_subscription("o", "carl", "r")
    assert alice.userz_access("o") == [
        {"username": "alice", "access_right": "C"}, {"username": "zed", "access_right": "U"},
        {"username": "carl", "access_right": "r"}, {"username": "bob", "access_right": "x"}]
    assert all(e["access_right"] == "x" for e in alice.userz_access(""))


def test_later_syncs_follow_the_change_feed_instead_of_listing(server: FakeServer, tmp_path: Path) -> None:
    alice = make_client(server, "alice", tmp_path / "a")
    bob = make_client(server, "bob", tmp_path / "b")
    alice.register_object({"k": 1}, oaio_id="o")
    alice.register_object({"k": 1}, oaio_id="other")
    assert bob.synchronize_with_server_if_online()             # first sync: one full listing
    listings = server.listings
    assert bob.synchronize_with_server_if_online()             # nothing happened
    alice.upsert_subscription("o", "bob", "U")                 # shared: bob gets an event
    assert bob.synchronize_with_server_if_online() and bob.client_objectz["o"].csh_access_right == "U"
    alice.upsert_subscription("o", "bob", "r")                 # right lowered, version unchanged
    assert bob.synchronize_with_server_if_online() and bob.client_objectz["o"].csh_access_right == "r"
    alice.update_object("o", {"k": 2})
    assert bob.synchronize_with_server_if_online() and bob.client_objectz["o"].client_values == {"k": 2}
    alice.upsert_subscription("o", "bob", "x")
    assert bob.synchronize_with_server_if_online() and "o" not in bob.client_objectz
    assert server.listings == listings                         # all of it without listing again
    assert "other" not in bob.client_objectz


def test_unregistered_local_file_edit_survives_remote_deletion(server: FakeServer, tmp_path: Path) -> None:
    alice = make_client(server, "alice", tmp_path / "a")
    bob = make_client(server, "bob", tmp_path / "b", "bd")
    obj = alice.register_file("f.txt", b"v1")
    alice.upsert_subscription(obj.oaio_id, "bob", "U")
    assert bob.synchronize_with_server_if_online()
    (bob.files_root(obj.oaio_id) / "f.txt").write_bytes(b"bob edited the file, never registered")
    (bob.files_root(obj.oaio_id) / "extra.txt").write_bytes(b"bob's new file")
    assert alice.unregister_object(obj.oaio_id) == ""
    assert bob.synchronize_with_server_if_online(), bob.error_message
    (copy,) = bob.client_objectz.values()
    root = bob.files_root(copy.oaio_id)
    assert (root / "f.txt").read_bytes() == b"bob edited the file, never registered"
    assert (root / "extra.txt").read_bytes() == b"bob's new file"
    assert sorted(copy.client_values["_file_paths"]) == ["extra.txt", "f.txt"]
    assert server.objects[copy.oaio_id]["files"]["extra.txt"]["data"] == b"bob's new file"


def test_leftover_temp_files_are_cleaned_and_dot_ids_kept(tmp_path: Path) -> None:
    from oaiofs.client.local_state import LocalState
    from oaiofs.client.oaio_object import OaiObject

    state = LocalState(tmp_path)
    with state.locked():
        state.save(OaiObject(".dotted"))
    (tmp_path / "objz" / ".x.json.tmp-123-456").write_text("half")
    fresh = LocalState(tmp_path)
    with fresh.locked():
        assert set(fresh.objects) == {".dotted"}
    assert not (tmp_path / "objz" / ".x.json.tmp-123-456").exists()


def test_folder_rescans_on_two_devices_merge_without_errors(server: FakeServer, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    d1 = make_client(server, "alice", tmp_path / "d1", "d1")
    d2 = make_client(server, "alice", tmp_path / "d2", "d2")
    obj = d1.register_folder(str(folder))
    assert d2.synchronize_with_server_if_online()
    (d2.files_root(obj.oaio_id) / "from-d2.txt").write_text("2")
    assert d2.update_folder(obj.oaio_id) is not None, d2.error_message
    (folder / "from-d1.txt").write_text("1")
    d1.error_message = ""
    assert d1.update_folder(obj.oaio_id) is not None
    assert d1.error_message == "", d1.error_message       # a merge, not a conflict or a "missing file"
    assert sorted(server.objects[obj.oaio_id]["values"]["_file_paths"]) == ["a.txt", "from-d1.txt", "from-d2.txt"]
    assert (folder / "from-d2.txt").read_text() == "2"
    assert d2.synchronize_with_server_if_online() and (d2.files_root(obj.oaio_id) / "from-d1.txt").read_text() == "1"


def test_failed_push_keeps_what_the_server_confirmed(server: FakeServer, tmp_path: Path, monkeypatch) -> None:
    from oaiofs.errors import TooLarge

    monkeypatch.setattr(batch_push, "SMALL_FILE_BYTES", 0)        # every file takes the (resumable) tus path

    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    (folder / "b.txt").write_text("b")
    alice = make_client(server, "alice", tmp_path / "a")

    class RefusesB(FakeUploader):
        def upload_file(self, local_path, oaio_id, path, **kw):  # type: ignore[override]
            if path == "b.txt" and not getattr(self, "healed", False):
                raise TooLarge("b.txt is too large today")
            return super().upload_file(local_path, oaio_id, path, **kw)

    uploader = RefusesB(alice.api)
    alice._sync.uploader = uploader
    obj = alice.register_folder(str(folder))
    assert "too large today" in alice.error_message
    assert set(server.objects[obj.oaio_id]["files"]) == {"a.txt"}
    uploader.healed = True
    alice.error_message = ""
    assert alice.synchronize_with_server_if_online(), alice.error_message
    assert set(server.objects[obj.oaio_id]["files"]) == {"a.txt", "b.txt"}
    assert [c[1] for c in uploader.calls] == ["a.txt", "b.txt"]          # a.txt was not sent twice
    assert "conflict" not in alice.error_message


def test_bad_arguments_answer_none_with_a_reason(server: FakeServer, tmp_path: Path) -> None:
    alice = make_client(server, "alice", tmp_path / "a")
    obj = alice.register_object({"k": 1}, stamp="20300101000000000000")
    assert obj is not None and obj.oaio_id.endswith("20300101000000000000")
    assert alice.update_object(obj.oaio_id, {"k": 2}, stamp="20240101000000000000") is None
    assert "newer than the object's current stamp" in alice.error_message
    alice.error_message = ""
    assert alice.register_object({"k": 1}, oaio_id=obj.oaio_id) is None and "already registered" in alice.error_message
    assert alice.register_object("not a dict") is None                             # type: ignore[arg-type]
    assert alice.register_file("../escape.txt", b"x") is None and "'..'" in alice.error_message
    assert alice.register_file("missing.txt") is None and "does not exist" in alice.error_message
    assert alice.update_object("no-such-id", {}) is None and "not registered" in alice.error_message
    assert alice.unregister_object("no-such-id") != ""
    assert not (tmp_path / "escape.txt").exists()
    assert list(server.objects) == [obj.oaio_id]


def test_a_failed_download_is_retried_by_the_next_sync(server: FakeServer, tmp_path: Path) -> None:
    alice = make_client(server, "alice", tmp_path / "a")
    api = FakeApi(server, "bob")
    downloader = FakeDownloader(api, corrupt=True)
    bob = make_client(server, "bob", tmp_path / "b", downloader=downloader)
    assert bob.synchronize_with_server_if_online()             # saves a feed cursor
    obj = alice.register_file("f.txt", b"content")
    alice.upsert_subscription(obj.oaio_id, "bob", "r")
    assert not bob.synchronize_with_server_if_online() and "sha256" in bob.error_message
    downloader.corrupt = False
    assert bob.synchronize_with_server_if_online(), bob.error_message
    assert (bob.files_root(obj.oaio_id) / "f.txt").read_bytes() == b"content"


def test_files_never_listed_in_file_paths_are_not_deleted(server: FakeServer, tmp_path: Path) -> None:
    alice = make_client(server, "alice", tmp_path / "a")
    obj = alice.register_file("listed.txt", b"l")
    alice.api.put(obj.oaio_id, "from-the-drive.txt", b"d", 0)          # attached without _file_paths
    assert alice.synchronize_with_server_if_online()
    assert alice.update_object(obj.oaio_id, {"note": "values edit"}) is not None
    assert alice.update_file(obj.oaio_id, "renamed.txt", b"r") is not None  # listed.txt dropped: deleted
    files = server.objects[obj.oaio_id]["files"]
    assert set(files) == {"from-the-drive.txt", "renamed.txt"}, alice.error_message


def test_a_malformed_server_document_does_not_stop_the_others(server: FakeServer, tmp_path: Path) -> None:
    alice = make_client(server, "alice", tmp_path / "a")
    bob = make_client(server, "bob", tmp_path / "b")
    for oid in ("bad", "good"):
        alice.register_object({"k": oid}, oaio_id=oid)
        alice.upsert_subscription(oid, "bob", "r")
    real_doc = FakeApi._doc

    def broken_doc(self, oaio_id):  # type: ignore[no-untyped-def]
        doc = real_doc(self, oaio_id)
        if oaio_id == "bad":
            del doc["version"]
        return doc

    FakeApi._doc = broken_doc  # type: ignore[method-assign]
    try:
        assert not bob.synchronize_with_server_if_online()
    finally:
        FakeApi._doc = real_doc  # type: ignore[method-assign]
    assert "bad: unexpected data" in bob.error_message
    assert bob.client_objectz["good"].client_values == {"k": "good"} and "bad" not in bob.client_objectz
    assert bob.synchronize_with_server_if_online() and "bad" in bob.client_objectz


def test_small_files_go_in_batches_and_a_stale_one_becomes_a_conflict_copy(server: FakeServer, tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(5):
        (folder / f"s{i}.txt").write_text(f"small {i}")
    alice = make_client(server, "alice", tmp_path / "a")
    uploader = FakeUploader(alice.api)
    alice._sync.uploader = uploader
    obj = alice.register_folder(str(folder))
    assert alice.error_message == ""
    assert alice.api.batches == [[f"s{i}.txt" for i in range(5)]] and uploader.calls == []
    files = server.objects[obj.oaio_id]["files"]
    assert {p: f["data"] for p, f in files.items()} == {f"s{i}.txt": f"small {i}".encode() for i in range(5)}
    bob_side = FakeApi(server, "alice")                     # another device of alice changes s1 on the server
    bob_side.put(obj.oaio_id, "s1.txt", b"server side", None)
    (folder / "s1.txt").write_text("local edit")
    (folder / "s2.txt").write_text("fresh edit")
    assert alice.update_folder(obj.oaio_id) is not None, alice.error_message
    assert alice.api.batches[-1] == ["s1.txt", "s2.txt"]
    files = server.objects[obj.oaio_id]["files"]
    assert files["s1.txt"]["data"] == b"server side" and files["s2.txt"]["data"] == b"fresh edit"
    copies = [p for p in files if p.startswith("s1 (conflict")]
    assert len(copies) == 1 and files[copies[0]]["data"] == b"local edit"
