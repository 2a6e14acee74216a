"""kill -9 of a process that is uploading through the journal, then a new process on the same
journal root: the upload resumes from the server's offset (real server, real processes)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from oaiofs.client.uploads import TusUploader
from oaiofs.vfs.journal import read_status
from tests.conftest import PASSWORD, wait_until
from tests.durability.conftest import SMALL_CHUNK, Harness
from tests.durability.helpers import server_uploads, write_random

REPO = Path(__file__).resolve().parents[2]
SIZE = 100 * 1024 * 1024
PAUSE_AT = 40 * 1024 * 1024


def start_child(h: Harness, root: Path, events: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tests.durability.journal_child", "--server", h.server.url, "--user", h.user,
           "--root", str(root), "--events", str(events), "--chunk-size", str(SMALL_CHUNK), *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, OAIOFS_PASSWORD=PASSWORD),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def events_of(path: Path) -> list[dict[str, int]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_kill9_mid_upload_resumes_from_server_offset(harness: Harness) -> None:
    h = harness
    oid = h.new_object({"_name": "kill9"})
    source = h.tmp / "big.bin"
    digest = write_random(source, SIZE)
    root, events1, events2 = h.tmp / "journal", h.tmp / "events1.jsonl", h.tmp / "events2.jsonl"

    first = start_child(h, root, events1, "--submit", oid, "big.bin", str(source), "--pause-at", str(PAUSE_AT))
    try:
        wait_until(lambda: any(e["offset"] >= PAUSE_AT for e in events_of(events1)), timeout=120,
                   message="the first process to upload 40 MiB")
        url = read_status(root)["ops"][0]["upload_url"]
        server_offset = TusUploader(h.api).offset(url)
        assert PAUSE_AT <= server_offset < SIZE
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    sent_before_kill = events_of(events1)[-1]["sent"]

    second = start_child(h, root, events2)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out.decode(errors="replace")[-3000:]
    resumed = events_of(events2)
    assert resumed[0]["offset"] == server_offset                       # resumed, not restarted
    sent_after_restart = resumed[-1]["sent"]
    assert sent_after_restart == SIZE - server_offset
    total = sent_before_kill + sent_after_restart
    assert total <= SIZE + 2 * SMALL_CHUNK, f"server received {total} bytes for a {SIZE}-byte file"

    upload, = server_uploads(h.server, oid, "big.bin")                 # one upload, resumed: no second copy
    assert upload["completed"] and upload["offset"] == SIZE

    entry = h.file_doc(oid, "big.bin")
    assert entry is not None and entry["size"] == SIZE and entry["sha256"] == digest
    assert read_status(root)["ops"] == [] and not list((root / "data").iterdir())
