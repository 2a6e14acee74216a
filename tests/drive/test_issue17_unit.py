"""Fast checks for issue 17: desktop metadata at the root, the read-only gate, forward-only bars."""
from __future__ import annotations

import errno
import io
import random
import re

import pytest

from oaiofs import protocol
from oaiofs.progress import ByteBar
from oaiofs.vfs.errors import NotPermitted, ReadOnly
from tests.drive.test_layers_unit import vfs_env  # noqa: F401 - fixture

NAMES = [".Trash", ".Trash-0", ".Trash-1000", ".directory", ".DS_Store", "._Report", ".Spotlight-V100"]


@pytest.mark.parametrize("name", NAMES)
def test_desktop_metadata_never_becomes_an_object(vfs_env, name):  # noqa: F811
    vfs, journal, _ = vfs_env
    with pytest.raises(NotPermitted) as exc:
        vfs.mkdir("/" + name)
    assert exc.value.errno == errno.EPERM
    with pytest.raises(NotPermitted):
        vfs.rename("/Two", "/" + name)
    vfs.mkdir("/One/" + name)                        # inside an object: an ordinary folder
    vfs.mkdir("/Trash")                              # a lookalike is an ordinary object
    assert [o.kind for o in journal.ops] == ["mkdir", "create_object"]


def test_ordinary_names_are_not_desktop_metadata():
    for name in ("Trash", ".Trashy", "directory", "DS_Store", ".config", "x.Trash-1"):
        assert not protocol.is_desktop_metadata(name), name


def test_a_refused_login_makes_every_change_erofs(vfs_env):  # noqa: F811
    vfs, journal, _ = vfs_env
    reason = "the account 'me' is disabled"
    vfs.read_only = lambda: reason
    import os
    calls = [lambda: vfs.create("/One/new.txt"), lambda: vfs.open("/One/a.txt", os.O_WRONLY),
             lambda: vfs.mkdir("/New"), lambda: vfs.mkdir("/One/sub"), lambda: vfs.unlink("/One/a.txt"),
             lambda: vfs.rmdir("/Two"), lambda: vfs.rename("/One/a.txt", "/One/b.txt")]
    for call in calls:
        with pytest.raises(ReadOnly) as exc:
            call()
        assert exc.value.errno == errno.EROFS and reason in exc.value.message
    fh, _ = vfs.open("/One/a.txt", os.O_RDONLY)      # reading goes on
    assert vfs.read(fh, 0, 100) == b"alpha"
    vfs.release(fh)
    assert journal.ops == []
    vfs.read_only = lambda: None
    vfs.mkdir("/New")
    assert [o.kind for o in journal.ops] == ["create_object"]


@pytest.mark.parametrize("seed", range(40))
def test_byte_bar_never_goes_back(seed):
    rng = random.Random(seed)
    lefts = [rng.randrange(0, 5_000_000) for _ in range(rng.randrange(1, 30))]
    out = io.StringIO()
    bar = ByteBar("uploading", total=lefts[0], file=out)
    last_done, last_total = 0, bar.total
    for left in lefts:
        bar.remaining(left)
        assert bar.done >= last_done and bar.total >= last_total and bar.total - bar.done == left
        last_done, last_total = bar.done, bar.total
    bar.close()
    for state in re.split(r"[\r\n]+", out.getvalue()):
        if "B/s" in state:
            assert "-" not in state.rsplit("[", 1)[1], state


def test_byte_bar_progress_is_monotone_for_a_seeded_random_fetch():
    rng = random.Random(17)
    bar = ByteBar("fetching", total=1000, done=100, file=io.StringIO())
    for _ in range(200):
        bar.progress(rng.randrange(0, 1200), rng.choice([None, 900, 1500]))
    assert bar.done <= bar.total and bar.done >= 100
    bar.close()


def test_id_and_info_xattrs_without_a_server(vfs_env, tmp_path):  # noqa: F811
    import json

    from oaiofs.vfs.control import Control
    from oaiofs.vfs.errors import NoAttribute

    vfs, journal, _ = vfs_env
    vfs.xattrs.control = Control(None, vfs.ns, journal, vfs.writeback, tmp_path, vfs.xattrs.file_status,
                                 lambda: True, origin="me@test", cache=vfs.cache)
    assert vfs.xattrs.getxattr("/One", protocol.XATTR_ID) == b"o1"
    assert protocol.XATTR_ID in vfs.xattrs.listxattr("/One")
    assert vfs.xattrs.getxattr("/One/d/b.txt", protocol.XATTR_ID) == b"o1"
    with pytest.raises(NoAttribute):
        vfs.xattrs.getxattr("/", protocol.XATTR_ID)
    info = json.loads(vfs.xattrs.getxattr("/One/d", protocol.XATTR_INFO))
    assert (info["oaio_id"], info["kind"], info["path"], info["files"], info["size"]) == ("o1", "dir", "d", 1, 4)
    with pytest.raises(Exception) as exc:                  # hostile requests: not JSON, unknown op
        vfs.xattrs.setxattr("/One", protocol.XATTR_CONTROL, b"\xff not json")
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(Exception) as exc:
        vfs.xattrs.setxattr("/One", protocol.XATTR_CONTROL, b'{"op": "format_disk", "nonce": "n1"}')
    assert exc.value.errno == errno.EINVAL
    result = json.loads(vfs.xattrs.getxattr("/One", protocol.XATTR_RESULT_PREFIX + "n1"))
    assert result["ok"] is False and "unknown control op" in result["message"]
    with pytest.raises(Exception) as exc:
        vfs.xattrs.setxattr("/One", protocol.XATTR_CONTROL, b'{"op": "retry", "nonce": "n2"}')
    assert exc.value.errno == errno.ENOENT                 # nothing failed here
    assert journal.ops == []
