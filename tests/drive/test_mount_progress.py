"""Progress that tells the truth: ``umount``'s upload bar and ``pin``'s fetch bar (issue 17)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.conftest import wait_until
from tests.drive.helpers import mount_status, server_has
from tests.drive.test_mount_share_cli import oaiofs

pytestmark = pytest.mark.timeout(180)
_BRACKETS = re.compile(r"\[([^\]]*)\]")


def bar_states(stderr: str) -> list[str]:
    """Every tqdm state printed (carriage-return separated)."""
    return [s for s in re.split(r"[\r\n]+", stderr) if "|" in s and "B/s" in s]


def assert_truthful(states: list[str], printed: str = "") -> None:
    assert states, f"no progress bar printed: {printed!r}"
    for state in states:
        inner = _BRACKETS.findall(state)[-1]                # "[00:01<00:02, 1.2MB/s]"
        assert "-" not in inner, state                      # no negative ETA or rate
        assert re.fullmatch(r"\d\d:\d\d<(\d\d:\d\d|\?), (\?|[\d.]+ ?[kMG]?)B/s", inner), state
    percents = [int(m.group(1)) for s in states for m in [re.search(r"(\d+)%", s)] if m]
    assert percents == sorted(percents), percents           # the bar only moves forward


def test_umount_waits_with_a_bar_of_bytes_to_upload(server_factory, mounted_drive, monkeypatch):
    from oaiofs.client.api import ApiClient
    from tests.conftest import PASSWORD

    server = server_factory()
    user = server.add_user("bar-user")
    api = ApiClient(server.url, user, PASSWORD)
    oid = api.create_object({"_name": "Up"})["oaio_id"]
    monkeypatch.setenv("OAIOFS_UPLOAD_LIMIT_BPS", str(250_000))      # a few seconds of upload to watch
    drive = mounted_drive(server, user)
    wait_until(drive.path("Up").is_dir, message="listed")
    server.stop()                                                      # the uploads wait for the server
    data = [os.urandom(900_000), os.urandom(700_000)]
    for i, blob in enumerate(data):
        drive.path("Up", f"f{i}.bin").write_bytes(blob)
    wait_until(lambda: len(mount_status(drive.mountpoint)["ops"]) == 2, message="both uploads queued")
    waiting = subprocess.Popen([sys.executable, "-m", "oaiofs", "umount", str(drive.mountpoint)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    assert waiting.poll() is None and drive.mounted                   # waits while the server is away
    server.start()
    out, err = waiting.communicate(timeout=150)
    assert waiting.returncode == 0, err
    assert not drive.mounted
    states = bar_states(err)
    assert_truthful(states, err + out)
    assert "100%" in states[-1]
    for i, blob in enumerate(data):
        assert server_has(api, oid, f"f{i}.bin", blob)
    fresh = mounted_drive(server, user)                                # read back with an empty cache
    assert fresh.path("Up", "f1.bin").read_bytes() == data[1]
    api.close()


def test_pin_shows_a_fetch_bar_and_warns_beyond_the_quota(live_server, user_api, mounted_drive, tmp_path):
    user, api = user_api
    oid = api.create_object({"_name": "Pins"})["oaio_id"]
    blobs = {f"big{i}.bin": os.urandom(1_500_000) for i in range(2)}
    for name, blob in blobs.items():
        api.put_file(oid, name, blob)
    drive = mounted_drive(live_server, user, cache_size="2M")
    wait_until(drive.path("Pins", "big1.bin").exists, message="listed")

    pinned = oaiofs("pin", str(drive.path("Pins", "big0.bin")))
    assert "pinned" in pinned.stdout and "quota" not in pinned.stderr
    states = bar_states(pinned.stderr)
    assert_truthful(states, pinned.stderr)
    assert "100%" in states[-1] and "fetching" in states[-1]
    assert os.getxattr(drive.path("Pins", "big0.bin"), "user.oaio.status") == b"cached"

    over = oaiofs("pin", str(drive.path("Pins")), check=False)
    assert "more than the cache quota" in over.stderr
    outside = oaiofs("pin", str(tmp_path), check=False)
    assert outside.returncode == 1 and "not inside an oaiofs mount" in outside.stderr
    status = oaiofs("status", str(drive.mountpoint)).stdout.splitlines()
    assert status[0].startswith(str(drive.mountpoint)) and "pinned" in status[0] and "cache:" in status[0]
    assert drive.path("Pins", "big1.bin").read_bytes() == blobs["big1.bin"]
