"""End-to-end (real server, real FUSE mounts) for issue 12's drive fixes: offline truncating writes,
the offline remount with a conflict, name lengths, folder link counts, ``tail -f`` of a remote append."""
from __future__ import annotations

import errno
import os
import subprocess

import pytest

from oaiofs.client.api import ApiClient
from tests.conftest import PASSWORD, wait_until
from tests.drive.helpers import mount_status, server_has

pytestmark = pytest.mark.timeout(240)


def test_offline_truncating_write_of_uncached_files(server_factory, mounted_drive):
    """``echo x > file`` offline needs no old bytes: it works, uploads once the server is back."""
    server = server_factory()
    user = server.add_user("trunc-offline")
    api = ApiClient(server.url, user, PASSWORD)
    oid = api.create_object({"_name": "Notes"})["oaio_id"]
    api.put_file(oid, "small.txt", b"old small text\n" * 10)
    api.put_file(oid, "big.bin", os.urandom(3 << 20))
    other = os.urandom(2 << 20)
    api.put_file(oid, "other.bin", other)
    drive = mounted_drive(server, user)
    assert sorted(os.listdir(drive.path("Notes"))) == ["big.bin", "other.bin", "small.txt", "values.json"]
    server.stop()
    wait_until(lambda: not mount_status(drive.mountpoint)["online"], timeout=60, message="mount offline")
    shell = subprocess.run(["sh", "-c", f"echo x > '{drive.path('Notes', 'small.txt')}'"], capture_output=True,
                           text=True, timeout=60)
    assert shell.returncode == 0, shell.stderr
    with open(drive.path("Notes", "big.bin"), "w") as fh:                   # open(p, "w") = O_TRUNC
        fh.write("now small\n")
    assert drive.path("Notes", "small.txt").read_bytes() == b"x\n"
    assert drive.path("Notes", "big.bin").read_bytes() == b"now small\n"
    with pytest.raises(OSError) as exc:                                     # old bytes needed: EIO
        with open(drive.path("Notes", "other.bin"), "r+b", buffering=0) as fh:
            fh.seek(5)
            fh.write(b"y")
    assert exc.value.errno == errno.EIO

    server.start()
    wait_until(lambda: server_has(api, oid, "small.txt", b"x\n") and server_has(api, oid, "big.bin", b"now small\n"),
               timeout=90, message="offline writes uploaded")
    fresh = mounted_drive(server, user)                                     # second mount, empty cache
    assert fresh.path("Notes", "small.txt").read_bytes() == b"x\n"
    assert fresh.path("Notes", "big.bin").read_bytes() == b"now small\n"
    assert fresh.path("Notes", "other.bin").read_bytes() == other             # the refused write changed nothing
