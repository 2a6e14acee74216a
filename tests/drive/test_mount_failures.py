"""``oaiofs conflicts/retry/discard`` and a disabled account through real mounts (issue 17)."""
from __future__ import annotations

import errno
import json
import os

import pytest

from tests.conftest import wait_until
from tests.drive.helpers import server_has
from tests.drive.test_mount_share_cli import oaiofs
from tests.server.test_admin import user_cli

pytestmark = pytest.mark.timeout(240)


def status_of(drive) -> dict:
    return json.loads(os.getxattr(drive.mountpoint, "user.oaio.mount_status"))


def _fail_upload(api, oid: str, writer: str, path, data: bytes) -> None:
    """Write ``data`` to ``path`` while the writer's right drops to r: the upload fails (403), bytes kept."""
    api.set_subscription(oid, writer, "U")
    wait_until(lambda: json.loads(os.getxattr(path.parent, "user.oaio.info"))["access_right"] == "U",
               timeout=60, message="the mount sees U")
    with open(path, "r+b" if path.exists() else "wb") as fh:
        api.set_subscription(oid, writer, "r")
        fh.write(data)
        fh.truncate()
    wait_until(lambda: os.getxattr(path, "user.oaio.status") == b"error", timeout=60, message="upload refused")


def test_retry_and_discard_failed_uploads(live_server, make_user, api_for, mounted_drive):
    owner, writer = make_user("own"), make_user("wri")
    api = api_for(owner)
    oid = api.create_object({"_name": "Fails"})["oaio_id"]
    api.put_file(oid, "a.txt", b"server a")
    api.put_file(oid, "b.txt", b"server b")
    api.set_subscription(oid, writer, "U")
    drive = mounted_drive(live_server, writer)
    a, b = drive.path("Fails", "a.txt"), drive.path("Fails", "b.txt")
    wait_until(b.exists, message="object listed")
    _fail_upload(api, oid, writer, a, b"LOCAL A")
    _fail_upload(api, oid, writer, b, b"LOCAL B")
    assert sorted(f["path"] for f in status_of(drive)["failed"]) == ["a.txt", "b.txt"]
    info = json.loads(oaiofs("info", str(drive.path("Fails")), "--json").stdout)
    assert (info["sync"], info["failed_changes"]) == ("error", 2)

    nothing = oaiofs("retry", str(drive.path("Fails", "missing.txt")), check=False)
    assert nothing.returncode == 1
    assert oaiofs("discard", str(drive.mountpoint.parent), check=False).returncode == 1   # outside a mount

    # retry while still read-only: fails again, nothing lost
    assert "1 failed change(s) queued again" in oaiofs("retry", str(a)).stdout
    wait_until(lambda: os.getxattr(a, "user.oaio.status") == b"error", timeout=60, message="failed again")
    assert api.get_file(oid, "a.txt") == b"server a"

    api.set_subscription(oid, writer, "U")                     # the owner gives the right back
    wait_until(lambda: json.loads(oaiofs("info", str(a), "--json").stdout)["access_right"] == "U",
               timeout=60, message="right back in the mount")
    oaiofs("retry", str(a))
    wait_until(lambda: server_has(api, oid, "a.txt", b"LOCAL A"), timeout=60, message="retried upload")

    # discard keeps the local bytes as a conflict copy in <cache>/rescued/<object>/
    out = oaiofs("discard", str(b)).stdout
    kept = [line.split("kept in ", 1)[1] for line in out.splitlines() if "kept in " in line]
    assert len(kept) == 1 and "conflict" in kept[0] and kept[0].startswith(str(drive.cache_dir))
    assert open(kept[0], "rb").read() == b"LOCAL B"
    wait_until(lambda: not status_of(drive)["failed"], message="failed list empty")
    wait_until(lambda: b.read_bytes() == b"server b", message="server's version shows again")
    assert api.get_file(oid, "b.txt") == b"server b"

    # --really drops the bytes
    _fail_upload(api, oid, writer, b, b"GONE")
    out = oaiofs("discard", str(drive.path("Fails")), "--really").stdout
    assert "1 failed change(s) discarded" in out and "kept in" not in out
    wait_until(lambda: b.read_bytes() == b"server b", message="server's version after --really")

    fresh = mounted_drive(live_server, owner)                  # read back with an empty cache
    assert fresh.path("Fails", "a.txt").read_bytes() == b"LOCAL A"
    assert fresh.path("Fails", "b.txt").read_bytes() == b"server b"


def test_conflicts_list_and_clear(live_server, make_user, api_for, mounted_drive):
    user = make_user("cfl")
    api = api_for(user)
    oid = api.create_object({"_name": "Conf"})["oaio_id"]
    api.put_file(oid, "doc.txt", b"base")
    drive = mounted_drive(live_server, user)
    path = drive.path("Conf", "doc.txt")
    wait_until(path.exists, message="listed")
    assert "no conflicts" in oaiofs("conflicts", str(drive.mountpoint)).stdout
    with open(path, "r+b") as fh:
        api.put_file(oid, "doc.txt", b"theirs")
        fh.write(b"mine")
    wait_until(lambda: status_of(drive)["conflicts"], timeout=60, message="conflict recorded")
    listed = json.loads(oaiofs("conflicts", str(drive.mountpoint), "--json").stdout)
    assert len(listed) == 1 and listed[0]["original"] == str(path)
    copy = listed[0]["copy"]
    assert "conflict" in copy
    wait_until(lambda: os.path.exists(copy) and open(copy, "rb").read() == b"mine", message="copy in the mount")
    assert str(path) in oaiofs("conflicts").stdout
    oaiofs("conflicts", str(drive.mountpoint), "--clear")
    assert json.loads(oaiofs("conflicts", str(drive.mountpoint), "--json").stdout) == []
    assert open(copy, "rb").read() == b"mine"                  # the copy stays


def test_disabled_account_makes_the_mount_read_only_offline(live_server, make_user, api_for, mounted_drive):
    user = make_user("off")
    api = api_for(user)
    oid = api.create_object({"_name": "Mine"})["oaio_id"]
    api.put_file(oid, "kept.txt", b"cached bytes")
    drive = mounted_drive(live_server, user)
    kept = drive.path("Mine", "kept.txt")
    wait_until(kept.exists, message="listed")
    assert kept.read_bytes() == b"cached bytes"

    user_cli(live_server, "disable", user)
    wait_until(lambda: status_of(drive).get("refused"), timeout=90, message="mount sees the refusal")
    status = status_of(drive)
    assert status["online"] is False and "disabled" in status["refused"]
    shown = oaiofs("status", str(drive.mountpoint)).stdout
    assert "disabled" in shown and "read-only" in shown
    with pytest.raises(OSError) as exc:
        drive.path("Mine", "new.txt").write_bytes(b"refused")
    assert exc.value.errno == errno.EROFS
    with pytest.raises(OSError) as exc:
        os.mkdir(drive.path("Other"))
    assert exc.value.errno == errno.EROFS
    assert kept.read_bytes() == b"cached bytes"                 # reading the cache goes on

    user_cli(live_server, "enable", user)
    wait_until(lambda: not status_of(drive).get("refused") and status_of(drive)["online"], timeout=90,
               message="writable again")
    drive.path("Mine", "new.txt").write_bytes(b"after enable")
    wait_until(lambda: server_has(api, oid, "new.txt", b"after enable"), timeout=60, message="uploaded")
    fresh = mounted_drive(live_server, user)
    assert fresh.path("Mine", "new.txt").read_bytes() == b"after enable"
