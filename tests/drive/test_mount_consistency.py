"""One writer's history on a real mount (issue 12): fsync + more writes, appends after reopen,
values.json rewritten shorter. Each test ends by reading back through a second mount with an
empty cache, and no conflict copy may appear (one mount writes)."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import wait_until
from tests.drive.helpers import server_has

pytestmark = pytest.mark.timeout(180)


def files_of(api, oid):
    return sorted(f["path"] for f in api.get_object(oid)["files"] if f["kind"] == "file")


def assert_no_conflict_copies(api, oid):
    assert not [p for p in files_of(api, oid) if "(conflict" in p], files_of(api, oid)


def fresh_read(mounted_drive, live_server, user, name, rel):
    """The bytes of ``name/rel`` as a second mount with an empty cache sees them."""
    other = mounted_drive(live_server, user)
    try:
        return (other.path(name) / rel).read_bytes()
    finally:
        other.stop()


def test_fsync_then_more_writes_on_the_same_descriptor(live_server, user_api, mounted_drive):
    user, api = user_api
    oid = api.create_object({"_name": "Fs"})["oaio_id"]
    drive = mounted_drive(live_server, user)
    path = drive.path("Fs") / "f"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b"A" * 1000)
    os.fsync(fd)
    os.write(fd, b"B" * 1000)
    os.fsync(fd)                                   # was EIO: a conflict with our own first commit
    os.write(fd, b"C" * 10)
    os.fsync(fd)
    os.close(fd)
    want = b"A" * 1000 + b"B" * 1000 + b"C" * 10
    assert path.read_bytes() == want
    wait_until(lambda: server_has(api, oid, "f", want), timeout=60, message="the last fsync uploaded")
    assert_no_conflict_copies(api, oid)
    assert fresh_read(mounted_drive, live_server, user, "Fs", "f") == want


def test_append_loop_with_wc_between_appends(live_server, user_api, mounted_drive):
    user, api = user_api
    oid = api.create_object({"_name": "Log"})["oaio_id"]
    drive = mounted_drive(live_server, user)
    folder = drive.path("Log")
    script = 'for i in $(seq 50); do echo "line $i" >> log.txt; n=$(wc -l < log.txt); ' \
             '[ "$n" = "$i" ] || echo "after $i: wc says $n"; done'
    out = subprocess.run(["bash", "-c", script], cwd=folder, capture_output=True, text=True, check=True)
    want = "".join(f"line {i}\n" for i in range(1, 51)).encode()
    assert out.stdout == ""
    assert (folder / "log.txt").read_bytes() == want
    wait_until(lambda: server_has(api, oid, "log.txt", want), timeout=60, message="log uploaded")
    assert_no_conflict_copies(api, oid)
    assert fresh_read(mounted_drive, live_server, user, "Log", "log.txt") == want


def test_values_json_rewritten_shorter_and_longer(live_server, user_api, mounted_drive):
    user, api = user_api
    oid = api.create_object({"_name": "Val", "keep": 1, "drop": "a long value to remove"})["oaio_id"]
    drive = mounted_drive(live_server, user)
    values = drive.path("Val") / "values.json"
    with open(values, "w") as fh:                  # O_TRUNC, shorter text: a key removed
        json.dump({"_name": "Val", "keep": 1}, fh)
    assert json.loads(values.read_text()) == {"_name": "Val", "keep": 1}
    wait_until(lambda: api.get_object(oid)["values"] == {"_name": "Val", "keep": 1}, message="key removed")
    with open(values, "w") as fh:                  # and longer again
        json.dump({"_name": "Val", "keep": 1, "new": list(range(50))}, fh)
    wait_until(lambda: api.get_object(oid)["values"].get("new") == list(range(50)), message="key added")
    assert_no_conflict_copies(api, oid)
    text = fresh_read(mounted_drive, live_server, user, "Val", "values.json")
    assert json.loads(text) == {"_name": "Val", "keep": 1, "new": list(range(50))}
