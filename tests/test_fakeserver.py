"""The unit tests' fake server keeps the protocol's rules and injects the faults it promises."""
from __future__ import annotations

import pytest

from oaiofs.errors import Forbidden, Gone, InsufficientStorage, NotFound, Unavailable, VersionConflict
from tests.fakeserver import BatchingFakeApi, FakeApi, FakeServer, FakeUploader, http_error


def test_versions_rights_and_deleted_objects():
    server = FakeServer()
    alice, bob = FakeApi(server, "alice"), FakeApi(server, "bob")
    alice.create_object({"k": 1}, "o")
    assert alice.put("o", "f", b"one", 0)["version"] == 2
    with pytest.raises(VersionConflict):
        alice.put("o", "f", b"stale", 0)
    with pytest.raises(NotFound):
        bob.get_object("o")                                    # a stranger
    alice.set_subscription("o", "bob", "r")
    assert bob.get_object("o")["access_right"] == "r"
    with pytest.raises(Forbidden):
        bob.put("o", "f", b"no", None)
    alice.delete_object("o")
    with pytest.raises(Gone):
        alice.get_object("o")
    assert server.blobs == {("o", "f"): b"one"}


def test_faults_fail_the_nth_call_cut_the_connection_and_answer_5xx_or_409(tmp_path):
    server = FakeServer()
    api = BatchingFakeApi(server)
    api.create_object({}, "o")
    server.fail_call(2, http_error(507))
    api.get_object("o")
    with pytest.raises(InsufficientStorage):
        api.get_object("o")
    api.get_object("o")
    server.fail_next(http_error(503), VersionConflict("injected"))
    with pytest.raises(Unavailable):
        api.get_object("o")
    with pytest.raises(VersionConflict):
        api.get_object("o")
    server.online = False
    with pytest.raises(Unavailable):
        api.list_objects()
    server.online = True
    local = tmp_path / "f"
    local.write_bytes(b"0123456789")
    patches: list[str] = []

    def cut_the_third_patch(name: str) -> None:
        if name == "patch":
            patches.append(name)
            if len(patches) == 3:
                raise Unavailable("connection cut mid-upload")
    server.on_call = cut_the_third_patch
    urls: list[str] = []
    uploader = FakeUploader(api)
    with pytest.raises(Unavailable):
        uploader.upload_file(local, "o", "f", on_url=urls.append)
    assert uploader.sent_bytes == 8
    server.on_call = None
    assert uploader.upload_file(local, "o", "f", url=urls[0])["size"] == 10
    assert uploader.sent_bytes == 10                           # resumed, nothing sent twice
    assert [name for name, _, _ in server.calls].count("get_object") == 5
