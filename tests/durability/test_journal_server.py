"""The journal against a real ``oaiofs serve`` process (no FUSE): order, chaining, outages,
conflicts, values merge, revoked rights."""
from __future__ import annotations

import json
from pathlib import Path

from oaiofs.errors import Forbidden
from oaiofs.vfs.journal import read_status
from oaiofs.vfs.opstore import Op
from tests.conftest import wait_until
from tests.durability.conftest import Harness
from tests.durability.helpers import Recorder, sha256, write_random


def put(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def test_ops_apply_in_order_with_chaining(harness: Harness) -> None:
    oid = "dur⫻order⁄" + harness.user
    rec = Recorder()
    journal = harness.journal(recorder=rec)
    journal.submit(Op("create_object", oid, values={"_name": "order", "n": 0}))
    journal.submit(Op("mkdir", oid, "docs"))
    # two saves of one new file, both based on "does not exist yet" (the drive did not know v1 yet)
    journal.submit(Op("put_file", oid, "docs/a.txt", base_version=0), put(harness.tmp, "1", b"first"))
    journal.submit(Op("put_file", oid, "docs/a.txt", base_version=0), put(harness.tmp, "2", b"second"))
    journal.submit(Op("move", oid, "docs/a.txt", dst="docs/b.txt", base_version=0))
    journal.submit(Op("put_values", oid, values={"_name": "order", "n": 1},
                      base_values={"_name": "order", "n": 0}, base_version=1))
    journal.start()
    assert journal.wait_idle(timeout=60)
    doc = harness.api.get_object(oid)
    assert doc["values"] == {"_name": "order", "n": 1}
    files = {f["path"]: f for f in doc["files"]}
    assert "docs/a.txt" not in files and files["docs/b.txt"]["sha256"] == sha256(b"second")
    assert harness.api.get_file(oid, "docs/b.txt") == b"second"
    assert not rec.conflicts and not rec.failed
    assert [op.kind for op, _ in rec.applied] == ["create_object", "mkdir", "put_file", "put_file", "move",
                                                  "put_values"]
    assert rec.applied[-1][1]["version"] == doc["version"]             # on_applied gets the ObjectDoc


def test_outage_queues_and_backs_off_then_completes(own_harness: Harness) -> None:
    h = own_harness
    oid = h.new_object({"_name": "outage"})
    journal = h.journal(backoff_initial_s=0.2, backoff_cap_s=2.0)
    journal.start()
    h.server.stop()
    blobs = {f"f{i:02d}.txt": f"file {i} ".encode() * (i + 1) for i in range(20)}
    ops = [journal.submit(Op("put_file", oid, name, base_version=0), put(h.tmp, name, data))
           for name, data in blobs.items()]
    wait_until(lambda: not journal.online, timeout=30, message="journal notices the outage")
    wait_until(lambda: ops[0].attempts >= 2, timeout=30, message="retries while the server is down")
    assert all(op.state in ("pending", "running") for op in ops)
    assert read_status(h.tmp / "journal")["online"] is False           # persisted for `oaiofs status`
    h.server.start()
    assert journal.wait_idle(timeout=60)
    assert journal.online
    files = {f["path"]: f for f in h.api.get_object(oid)["files"]}
    for name, data in blobs.items():
        assert files[name]["sha256"] == sha256(data) and files[name]["size"] == len(data)


def test_file_version_conflict_keeps_both(harness: Harness) -> None:
    oid = harness.new_object()
    base = harness.api.put_file(oid, "report.txt", b"v1", base_version=0)["version"]
    rec = Recorder()
    journal = harness.journal(recorder=rec, origin="alice@laptop")
    op = journal.submit(Op("put_file", oid, "report.txt", base_version=base), put(harness.tmp, "l", b"local edit"))
    harness.api.put_file(oid, "report.txt", b"edit from another device", base_version=base)
    journal.start()
    assert journal.wait(op, timeout=60).state == "conflict"
    (_, copy_path), = rec.conflicts
    assert copy_path.startswith("report (conflict alice@laptop ") and copy_path.endswith(").txt")
    assert harness.api.get_file(oid, "report.txt") == b"edit from another device"
    assert harness.api.get_file(oid, copy_path) == b"local edit"


def test_values_three_way_merge_and_clash(harness: Harness) -> None:
    oid = harness.new_object({"title": "t", "owner": "a", "n": 1})
    rec = Recorder()
    journal = harness.journal(recorder=rec)
    base = harness.api.get_object(oid)
    merge_op = journal.submit(Op("put_values", oid, values={**base["values"], "title": "mine"},
                                 base_values=base["values"], base_version=base["version"]))
    harness.api.update_values(oid, {"n": 2}, mode="merge", base_version=base["version"])  # another device
    journal.start()
    assert journal.wait(merge_op, timeout=60).state == "done"
    merged = harness.api.get_object(oid)
    assert merged["values"] == {"title": "mine", "owner": "a", "n": 2}
    assert not rec.conflicts
    journal.stop()
    clash_op = journal.submit(Op("put_values", oid, values={**merged["values"], "owner": "me", "n": 3},
                                 base_values=merged["values"], base_version=merged["version"]))
    harness.api.update_values(oid, {"owner": "them"}, mode="merge", base_version=merged["version"])
    journal.start()
    assert journal.wait(clash_op, timeout=60).state == "conflict"
    final = harness.api.get_object(oid)["values"]
    assert final == {"title": "mine", "owner": "them", "n": 3}     # clash: server's; other keys merged
    (_, copy_path), = rec.conflicts
    assert copy_path.startswith("values (conflict alice@laptop ") and copy_path.endswith(").json")
    assert json.loads(harness.api.get_file(oid, copy_path)) == {**merged["values"], "owner": "me", "n": 3}


def test_revoked_rights_keep_bytes_and_report_failed(harness: Harness) -> None:
    oid = harness.new_object({"_name": "shared"})
    bob = harness.server.add_user(harness.user + "-bob")
    harness.api.set_subscription(oid, bob, "U")
    rec = Recorder()
    journal = harness.journal(user=bob, origin="bob@desk", recorder=rec)
    op = journal.submit(Op("put_file", oid, "bob.txt", base_version=0), put(harness.tmp, "b", b"bob's work"))
    harness.api.set_subscription(oid, bob, "r")                        # revoked while pending
    journal.start()
    assert journal.wait(op, timeout=60).state == "failed"
    (failed_op, err), = rec.failed
    assert isinstance(err, Forbidden)
    assert Path(failed_op.data_file).read_bytes() == b"bob's work"     # kept
    assert journal.status()["failed"][0]["path"] == "bob.txt"
    assert read_status(harness.tmp / "journal")["failed"][0]["error"].startswith("forbidden")
    assert harness.file_doc(oid, "bob.txt") is None
    harness.api.set_subscription(oid, bob, "U")                        # given back: retry succeeds
    journal.retry()
    assert journal.wait_idle(timeout=60)
    assert harness.api.get_file(oid, "bob.txt") == b"bob's work"


def test_completed_upload_is_not_reapplied_as_conflict(harness: Harness) -> None:
    """A crash after the server committed but before the journal recorded it must not conflict."""
    oid = harness.new_object()
    src = harness.tmp / "f.bin"
    digest = write_random(src, 3 << 20)
    journal = harness.journal()
    op = journal.submit(Op("put_file", oid, "f.bin", base_version=0), src)
    journal.close()                                       # never started
    # the "lost answer": the bytes reached the server through another path
    with open(src, "rb") as fh:
        harness.api.put_file(oid, "f.bin", fh, base_version=0)
    rec = Recorder()
    again = harness.journal(recorder=rec)
    again.start()
    assert again.wait_idle(timeout=60)
    assert not rec.conflicts and not rec.failed and [o.id for o, _ in rec.applied] == [op.id]
    assert harness.file_doc(oid, "f.bin")["sha256"] == digest
