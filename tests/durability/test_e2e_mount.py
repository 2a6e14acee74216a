"""Issue 5 end to end: a real server process, real FUSE mounts (``oaiofs mount`` child processes).

kill -9 of the mount mid-upload, a server outage while writing, concurrent edits from two
mounts, and a mount that starts while the server is down.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from oaiofs.client.uploads import TusUploader
from oaiofs.vfs.journal import ENV_UPLOAD_LIMIT, read_status
from tests.conftest import wait_until
from tests.drive.helpers import mount_status
from tests.durability.conftest import Harness
from tests.durability.helpers import server_uploads, sha256, write_random

pytestmark = [pytest.mark.fuse, pytest.mark.timeout(400)]

BIG = 100 * 1024 * 1024
SLOW_UPLOAD_BPS = 16 * 1024 * 1024      # so the test can kill the mount while the upload runs


def wait_explained(predicate: Callable[[], object], message: str, h: Harness, *drives: Any,
                   timeout: float = 120) -> None:
    """``wait_until`` that shows the server's and the mounts' log tails when it times out."""
    try:
        wait_until(predicate, timeout=timeout, interval=0.5, message=message)
    except AssertionError as exc:
        logs = "\n".join(f"--- mount {d.mountpoint}:\n{d.log()[-3000:]}" for d in drives)
        raise AssertionError(f"{exc}\n--- server:\n{h.server.log_tail(60)}\n{logs}") from None


def server_files(h: Harness, oid: str) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in h.api.get_object(oid)["files"] if f["kind"] == "file"}


def upload_progress(journal_root: Path, api: Any) -> int:
    """Bytes the server holds of the mount's first pending upload (0 before it started)."""
    ops = [o for o in read_status(journal_root)["ops"] if o.get("upload_url")]
    return TusUploader(api).offset(ops[0]["upload_url"]) if ops else 0


@pytest.mark.slow
def test_kill9_mount_mid_upload_then_remount_resumes(harness: Harness, mounted_drive: Callable[..., Any],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    h = harness
    oid = h.new_object({"_name": "Big"})
    source = h.tmp / "big.src"
    digest = write_random(source, BIG)
    monkeypatch.setenv(ENV_UPLOAD_LIMIT, str(SLOW_UPLOAD_BPS))
    drive = mounted_drive(h.server, h.user)
    shutil.copyfile(source, drive.path("Big", "big.bin"))             # close() -> snapshot + queued upload
    journal_root = drive.cache_dir / "journal"

    wait_explained(lambda: upload_progress(journal_root, h.api) >= 20 * 1024 * 1024,
                   "the mount to upload 20 MiB", h, drive)
    drive.kill()                                                        # kill -9 mid-upload
    at_kill = upload_progress(journal_root, h.api)
    assert 0 < at_kill < BIG, "the upload must be cut in the middle"

    monkeypatch.delenv(ENV_UPLOAD_LIMIT)
    again = mounted_drive(h.server, h.user, cache_dir=drive.cache_dir)
    wait_explained(lambda: server_files(h, oid).get("big.bin", {}).get("sha256") == digest,
                   "the upload to complete after the remount", h, again, timeout=180)
    upload, = server_uploads(h.server, oid, "big.bin")                 # resumed: no second upload
    assert upload["completed"] and upload["offset"] == BIG
    resumed_at = [int(m) for m in re.findall(r"the server has (\d+) of %d bytes" % BIG, again.log())]
    assert resumed_at and resumed_at[-1] >= at_kill, again.log()[-3000:]
    received = at_kill + (BIG - resumed_at[-1])          # recorded before the kill + sent after the remount
    assert received < 1.1 * BIG, f"server received {received} bytes"   # far less than 200 MiB
    assert os.stat(again.path("Big", "big.bin")).st_size == BIG


def test_outage_50_files_written_offline_all_arrive(own_harness: Harness,
                                                    mounted_drive: Callable[..., Any]) -> None:
    h = own_harness
    oid = h.new_object({"_name": "Offline"})
    drive = mounted_drive(h.server, h.user)
    folder = drive.path("Offline")
    assert folder.is_dir()
    h.server.stop()
    payloads = {f"note-{i:02d}.txt": os.urandom(1000 + 97 * i) for i in range(50)}
    for name, data in payloads.items():
        (folder / name).write_bytes(data)
    for name, data in payloads.items():                                  # read-your-writes while offline
        assert (folder / name).read_bytes() == data
    assert set(payloads) <= set(os.listdir(folder))
    wait_until(lambda: mount_status(drive.mountpoint)["online"] is False, timeout=60,
               message="the mount to report the outage")
    assert read_status(drive.cache_dir / "journal")["ops"]               # queued on disk
    h.server.start()

    def all_arrived() -> bool:
        files = server_files(h, oid)
        return all(files.get(n, {}).get("sha256") == sha256(d) for n, d in payloads.items())
    wait_explained(all_arrived, "all 50 files on the server", h, drive)
    for name in ("note-00.txt", "note-49.txt"):
        assert h.api.get_file(oid, name) == payloads[name]
    wait_until(lambda: mount_status(drive.mountpoint)["online"] is True, timeout=60, message="back online")


def test_two_mounts_edit_the_same_file_and_key_both_survive(own_harness: Harness,
                                                           mounted_drive: Callable[..., Any]) -> None:
    h = own_harness
    oid = h.new_object({"_name": "Both", "k": "base"})
    h.api.put_file(oid, "shared.txt", b"base\n", base_version=0)
    one = mounted_drive(h.server, h.user)
    two = mounted_drive(h.server, h.user)
    for drive in (one, two):                                             # both know the same versions
        assert drive.path("Both", "shared.txt").read_bytes() == b"base\n"
        assert json.loads(drive.path("Both", "values.json").read_text())["k"] == "base"
    h.server.stop()                                                      # edits made concurrently
    one.path("Both", "shared.txt").write_bytes(b"from one\n")
    two.path("Both", "shared.txt").write_bytes(b"from two\n")
    one.path("Both", "values.json").write_text(json.dumps({"_name": "Both", "k": "one", "a": 1}))
    two.path("Both", "values.json").write_text(json.dumps({"_name": "Both", "k": "two", "b": 2}))
    h.server.start()

    def settled() -> bool:
        files = server_files(h, oid)
        copies = [p for p in files if p.startswith("shared (conflict ") and p.endswith(").txt")]
        value_copies = [p for p in files if p.startswith("values (conflict ") and p.endswith(").json")]
        values = h.api.get_object(oid)["values"]
        return bool(copies and value_copies and values.get("a") == 1 and values.get("b") == 2)
    wait_explained(settled, "both edits on the server", h, one, two, timeout=180)
    files = server_files(h, oid)
    copy_path, = [p for p in files if p.startswith("shared (conflict ")]
    assert {h.api.get_file(oid, "shared.txt"), h.api.get_file(oid, copy_path)} == {b"from one\n", b"from two\n"}
    values = h.api.get_object(oid)["values"]
    values_copy, = [p for p in files if p.startswith("values (conflict ")]
    kept = json.loads(h.api.get_file(oid, values_copy))
    assert {values["k"], kept["k"]} == {"one", "two"}                    # the clash: both values survive
    wait_until(lambda: copy_path in os.listdir(one.path("Both")), timeout=60,
               message="the conflict copy to show up in the mount")


def test_mount_starts_offline_serves_cached_and_pinned_and_unmount_keeps_queue(own_harness: Harness,
                                                          mounted_drive: Callable[..., Any]) -> None:
    h = own_harness
    oid = h.new_object({"_name": "Trip"})
    read_me, pin_me = os.urandom(300_000), os.urandom(2_000_000)
    h.api.put_file(oid, "read.bin", read_me, base_version=0)
    h.api.put_file(oid, "docs/pinned.bin", pin_me, base_version=0)
    drive = mounted_drive(h.server, h.user)
    assert drive.path("Trip", "read.bin").read_bytes() == read_me       # cached by reading
    os.setxattr(drive.path("Trip", "docs"), "user.oaio.pin", b"1")      # pinned (fetched in background)
    wait_until(lambda: os.getxattr(drive.path("Trip", "docs", "pinned.bin"), "user.oaio.status") == b"cached",
               timeout=60, message="the pinned file to be cached")
    drive.stop()
    h.server.stop()

    offline = mounted_drive(h.server, h.user, cache_dir=drive.cache_dir)
    assert "Trip" in os.listdir(offline.mountpoint)                      # listing from the last known state
    assert offline.path("Trip", "read.bin").read_bytes() == read_me
    assert offline.path("Trip", "docs", "pinned.bin").read_bytes() == pin_me
    assert json.loads(offline.path("Trip", "values.json").read_text())["_name"] == "Trip"
    offline.path("Trip", "written-offline.txt").write_bytes(b"queued")   # and writes queue
    assert mount_status(offline.mountpoint)["online"] is False
    offline.stop()                                                       # clean unmount: the queue stays
    queued = read_status(drive.cache_dir / "journal")["ops"]
    assert [(o["kind"], o["path"]) for o in queued] == [("put_file", "written-offline.txt")]
    h.server.start()
    remounted = mounted_drive(h.server, h.user, cache_dir=drive.cache_dir)
    wait_explained(lambda: "written-offline.txt" in server_files(h, oid),
                   "the offline write to arrive after the remount", h, remounted)
    assert h.api.get_file(oid, "written-offline.txt") == b"queued"
