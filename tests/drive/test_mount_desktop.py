"""File managers on the drive: ``gio trash`` is refused honestly (GLib then offers permanent deletion) and no
desktop metadata ever becomes an object; ``gio list/copy/move/remove`` work (issue 17)."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess

import pytest

from tests.conftest import wait_until
from tests.drive.helpers import server_has

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(shutil.which("gio") is None, reason="gio (libglib2.0-bin, scripts/install --test)")]


def gio(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GIO_USE_VFS="local", GIO_USE_VOLUME_MONITOR="unix")
    result = subprocess.run(["gio", *map(str, args)], capture_output=True, text=True, env=env, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"gio {args} -> {result.returncode}: {result.stderr}")
    return result


def names(api) -> set[str]:
    return {o["values"].get("_name") for o in api.list_objects()[0]}


def test_gio_trash_is_refused_and_leaves_no_object(live_server, user_api, mounted_drive, tmp_path):
    user, api = user_api
    oid = api.create_object({"_name": "Desk"})["oaio_id"]
    api.put_file(oid, "keep.txt", b"keep me")
    old_trash = api.create_object({"_name": f".Trash-{os.getuid()}"})["oaio_id"]   # left by an older drive
    drive = mounted_drive(live_server, user)
    target = drive.path("Desk", "keep.txt")
    wait_until(target.exists, message="file listed")
    shown = [n for n in os.listdir(drive.mountpoint) if n.startswith(".Trash")]
    assert len(shown) == 1 and shown[0] != f".Trash-{os.getuid()}"      # shown as ".Trash-0 ~abc123"
    os.rmdir(drive.path(shown[0]))                                       # and can be deleted
    wait_until(lambda: names(api) == {"Desk"}, message="old trash object deleted")
    assert old_trash

    trashed = gio("trash", target, check=False)
    assert trashed.returncode != 0
    # G_IO_ERROR_NOT_SUPPORTED "no trash here": what makes Nautilus & co. offer "Delete Permanently"
    assert "find or create trash directory" in trashed.stderr, trashed.stderr
    assert target.read_bytes() == b"keep me"
    gio("trash", drive.path("Desk"), check=False)                      # an object folder: refused too
    assert drive.path("Desk").is_dir()
    for name in (f".Trash-{os.getuid()}", ".Trash", ".directory", ".DS_Store", "._Desk"):
        with pytest.raises(OSError) as exc:
            os.mkdir(drive.path(name))
        assert exc.value.errno == errno.EPERM, name
    with pytest.raises(OSError):
        os.rename(drive.path("Desk"), drive.path(".Trash-1000"))
    assert names(api) == {"Desk"}                                       # no .Trash-* object on the server
    assert not any(n.startswith(".") for n in os.listdir(drive.mountpoint))

    # the rest of what a file manager does: list, copy in, move inside, delete permanently
    listing = gio("list", "-l", drive.path("Desk")).stdout
    assert "keep.txt" in listing
    local = tmp_path / "from-desktop.bin"
    data = os.urandom(300_000)
    local.write_bytes(data)
    gio("copy", local, drive.path("Desk", "copied.bin"))
    os.mkdir(drive.path("Desk", "sub"))
    gio("move", drive.path("Desk", "copied.bin"), drive.path("Desk", "sub", "moved.bin"))
    gio("copy", drive.path("Desk", "keep.txt"), tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_bytes() == b"keep me"
    gio("remove", target)
    assert not target.exists()
    # inside an object a .directory is an ordinary file (only the root refuses desktop metadata)
    drive.path("Desk", ".directory").write_text("[Desktop Entry]\n")
    wait_until(lambda: server_has(api, oid, "sub/moved.bin", data), message="moved file on the server")
    wait_until(lambda: server_has(api, oid, ".directory", b"[Desktop Entry]\n"), message=".directory uploaded")
    wait_until(lambda: "keep.txt" not in {f["path"] for f in api.get_object(oid)["files"]}, message="removed")

    fresh = mounted_drive(live_server, user)                           # read back with an empty cache
    assert fresh.path("Desk", "sub", "moved.bin").read_bytes() == data
    assert sorted(os.listdir(fresh.mountpoint)) == ["Desk"]
    assert names(api) == {"Desk"}
