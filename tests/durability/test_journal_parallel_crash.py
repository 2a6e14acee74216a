"""kill -9 of a journal process while several ops of one object are in flight at once (issue 16:
parallel uploads within an object), then a new process on the same root: nothing is lost, ops
that waited for an interrupted one still wait for it, and nothing is applied twice (real server,
real processes)."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from oaiofs.vfs.journal import read_status
from tests.conftest import wait_until
from tests.durability.conftest import SMALL_CHUNK, Harness
from tests.durability.helpers import sha256, write_random
from tests.durability.test_journal_crash import events_of, start_child

BIG = 3 * SMALL_CHUNK
PAUSE_AT = SMALL_CHUNK


@pytest.mark.slow
def test_kill9_with_several_ops_of_one_object_in_flight_loses_nothing(harness: Harness,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAIOFS_UPLOAD_PARALLEL", "4")   # the children apply ops of one object in parallel
    h = harness
    oid = h.new_object({"_name": "par-kill9"})
    want: dict[str, str] = {}                      # path -> sha256 the server must end with
    ops: list[dict[str, object]] = [{"kind": "mkdir", "oaio_id": oid, "path": d} for d in ("big", "small", "done")]
    for i in range(3):                             # three tus uploads held in flight (--pause-at)
        src = h.tmp / f"big{i}.bin"
        want[f"big/b{i}.bin"] = write_random(src, BIG)
        ops.append({"kind": "put_file", "oaio_id": oid, "path": f"big/b{i}.bin", "base_version": 0,
                    "source": str(src)})
    for i in range(30):                            # small files: batches beside the big uploads
        src = h.tmp / f"s{i}"
        src.write_bytes(f"small {i}\n".encode() * (i + 1))
        want[f"small/s{i}"] = sha256(src.read_bytes())
        ops.append({"kind": "put_file", "oaio_id": oid, "path": f"small/s{i}", "base_version": 0,
                    "source": str(src)})
    ops.append({"kind": "move", "oaio_id": oid, "path": "big/b0.bin", "dst": "done/b0.bin"})   # waits for b0
    want["done/b0.bin"] = want.pop("big/b0.bin")
    ops.append({"kind": "move", "oaio_id": oid, "path": "small/s0", "dst": "small/moved0"})
    want["small/moved0"] = want.pop("small/s0")
    ops.append({"kind": "delete_path", "oaio_id": oid, "path": "small/s1"})
    del want["small/s1"]
    ops_file = h.tmp / "ops.jsonl"
    ops_file.write_text("".join(json.dumps(op) + "\n" for op in ops))

    root, events1, events2 = h.tmp / "journal", h.tmp / "events1.jsonl", h.tmp / "events2.jsonl"
    first = start_child(h, root, events1, "--ops", str(ops_file), "--pause-at", str(PAUSE_AT))
    try:
        def held() -> set[str]:
            return {e["path"] for e in events_of(events1) if e["offset"] >= PAUSE_AT}
        wait_until(lambda: len(held()) == 3, timeout=180, message="three uploads of one object held in flight")
        status = read_status(root)
        assert {o["path"] for o in status["ops"]} >= {"big/b0.bin", "big/b1.bin", "big/b2.bin"}
        assert any(o["kind"] == "move" and o["path"] == "big/b0.bin" for o in status["ops"])   # still waiting
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    files = {f["path"]: f for f in h.api.get_object(oid)["files"]}
    assert "done/b0.bin" not in files and "big/b0.bin" not in files   # the move did not overtake the upload

    second = start_child(h, root, events2)
    try:
        out, _ = second.communicate(timeout=300)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, out.decode(errors="replace")[-3000:]
    doc = h.api.get_object(oid)
    have = {f["path"]: f.get("sha256") for f in doc["files"] if f.get("kind", "file") == "file"}
    assert have == want, {"missing": sorted(set(want) - set(have)), "extra": sorted(set(have) - set(want))}
    status = read_status(root)
    assert status["ops"] == [] and status["failed"] == [] and status["conflicts"] == []
    assert not list(Path(root, "data").iterdir())          # every snapshot released once applied
