"""Fast checks of the mount's side of ``oaiofs versions`` / ``restore --version`` (vfs/history_control.py)."""
from __future__ import annotations

import errno
import json
import os
from typing import Any

import pytest

from oaiofs import protocol
from oaiofs.vfs.control import Control
from tests.drive.fakes import object_doc
from tests.drive.test_layers_unit import vfs_env  # noqa: F401 - fixture


class _Resp:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def json(self) -> dict[str, Any]:
        return self.body


class FakeHistoryApi:
    """Records the history calls; restores answer version 7, get_object a doc at version 7."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def request(self, method: str, url: str, params: Any = None) -> _Resp:
        self.calls.append((method, url, params))
        if method == "POST":
            return _Resp({"version": 7, "sha256": "ab", "size": 5})
        return _Resp({"versions": [{"version": v} for v in range(400, 0, -1)]})

    def get_object(self, oaio_id: str) -> dict[str, Any]:
        self.calls.append(("GET", "object " + oaio_id, None))
        return object_doc("o1", "One", {"a.txt": b"old!!", "d/b.txt": b"beta"}, version=7)


def _control(vfs_env):  # noqa: F811
    vfs, journal, _ = vfs_env
    api = FakeHistoryApi()
    vfs.xattrs.control = Control(api, vfs.ns, journal, vfs.writeback, journal.root, vfs.xattrs.file_status,
                                 lambda: True, origin="me@test", cache=vfs.cache)
    return vfs, journal, api


def _request(vfs, path: str, **fields: Any) -> dict[str, Any]:
    nonce = os.urandom(4).hex()
    try:
        vfs.xattrs.setxattr(path, protocol.XATTR_CONTROL, json.dumps({"nonce": nonce, **fields}).encode())
    finally:
        result = json.loads(vfs.xattrs.getxattr(path, protocol.XATTR_RESULT_PREFIX + nonce))
    return result


def test_restore_sends_the_shown_version_as_base_and_refreshes_the_object(vfs_env):  # noqa: F811
    vfs, _, api = _control(vfs_env)
    result = _request(vfs, "/One/a.txt", op="restore_version", version=3)
    assert result["ok"] and result["version"] == 7 and result["restored_from"] == 3
    method, url, params = api.calls[0]
    assert method == "POST" and url.endswith("/history/restore/3/a.txt") and params == {"base_version": 1}
    assert api.calls[1] == ("GET", "object o1", None)
    assert vfs.getattr("/One/a.txt").size == 5                      # the refreshed document is shown
    values = _request(vfs, "/One/values.json", op="restore_version", version="2")
    assert values["ok"] and api.calls[2][1].endswith("/history/values/2/restore")
    assert api.calls[2][2] == {"base_version": 7}


def test_versions_are_listed_and_capped_for_the_xattr_channel(vfs_env):  # noqa: F811
    vfs, _, api = _control(vfs_env)
    result = _request(vfs, "/One/d/b.txt", op="versions")
    assert result["ok"] and result["truncated"] and len(result["versions"]) == 150
    assert len(json.dumps(result)) < 65536
    assert api.calls[0][1].endswith("/history/versions/d/b.txt")
    assert _request(vfs, "/One/values.json", op="versions")["ok"]
    assert api.calls[1][1].endswith("/history/values")


@pytest.mark.parametrize("bad", [True, 1.5, "-1", "٣", "", None, [1], "1e3"])
def test_bad_versions_are_einval_and_reach_no_server(vfs_env, bad):  # noqa: F811
    vfs, _, api = _control(vfs_env)
    with pytest.raises(Exception) as exc:
        _request(vfs, "/One/a.txt", op="restore_version", version=bad)
    assert exc.value.errno == errno.EINVAL and api.calls == []


def test_folders_and_the_root_have_no_versions(vfs_env):  # noqa: F811
    vfs, _, api = _control(vfs_env)
    for path in ("/One/d", "/One"):
        with pytest.raises(Exception) as exc:
            _request(vfs, path, op="versions")
        assert exc.value.errno == errno.EPERM
    with pytest.raises(Exception) as exc:
        _request(vfs, "/", op="versions")
    assert exc.value.errno == errno.EPERM and api.calls == []


def test_a_file_with_unsent_changes_is_not_restored(vfs_env):  # noqa: F811
    vfs, journal, api = _control(vfs_env)
    fh, _ = vfs.open("/One/a.txt", os.O_WRONLY)
    vfs.write(fh, 0, b"local")
    vfs.release(fh)
    assert journal.pending("o1")
    with pytest.raises(Exception) as exc:
        _request(vfs, "/One/a.txt", op="restore_version", version=1)
    assert exc.value.errno == errno.EBUSY and api.calls == []
    result = _request(vfs, "/One/d/b.txt", op="restore_version", version=1)     # another file: fine
    assert result["ok"]
