"""``oaiofs versions`` / ``oaiofs restore --version`` through real mounts (issue 17, version history)."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import PASSWORD, wait_until
from tests.drive.helpers import oaiofs

pytestmark = pytest.mark.timeout(300)


def versions(target: str, *extra: str, password: str | None = None) -> list[dict]:
    return json.loads(oaiofs("versions", target, *extra, "--json", password=password).stdout)


def cat(path) -> bytes:
    """Read with a real program (cat), not Python."""
    return subprocess.run(["cat", str(path)], capture_output=True, check=True, timeout=60).stdout


def test_three_versions_listed_and_the_first_restored_on_another_users_mount(live_server, make_user, api_for,
                                                                             mounted_drive):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    api_a = api_for(alice)
    oid = api_a.create_object({"_name": "Hist", "n": 1})["oaio_id"]
    api_a.set_subscription(oid, bob, "U")
    api_a.set_subscription(oid, carol, "r")
    drive_a = mounted_drive(live_server, alice)
    doc = drive_a.path("Hist", "notes.txt")
    wait_until(lambda: drive_a.path("Hist").is_dir(), message="object listed")
    contents = [b"first version\n", b"second version, longer\n", b"third\n"]
    for i, data in enumerate(contents):
        src = drive_a.cache_dir.parent / f"src{i}.txt"
        src.write_bytes(data)
        subprocess.run(["cp", str(src), str(doc)], check=True, timeout=60)      # a real program writes
        wait_until(lambda: api_a.get_object(oid)["files"] and len(versions(str(doc))) == i + 1,
                   timeout=60, message=f"version {i + 1} uploaded")
    listed = versions(str(doc))
    assert [v["sha256"] for v in listed] == [__import__("hashlib").sha256(c).hexdigest() for c in reversed(contents)]
    assert [v["size"] for v in listed] == [len(c) for c in reversed(contents)]
    assert all(v["author"] == alice and v["modified"] for v in listed)
    assert [v["current"] for v in listed] == [True, False, False]
    first = listed[-1]["version"]
    human = oaiofs("versions", str(doc)).stdout
    assert "VERSION" in human and alice in human and str(first) in human

    # values: two changes through alice's mount
    values_file = drive_a.path("Hist", "values.json")
    values_file.write_text(json.dumps({"_name": "Hist", "n": 2}))
    wait_until(lambda: api_a.get_object(oid)["values"].get("n") == 2, message="values n=2")
    values_file.write_text(json.dumps({"_name": "Hist", "n": 3, "extra": "x"}))
    wait_until(lambda: api_a.get_object(oid)["values"].get("n") == 3, message="values n=3")

    # bob (right U) reads the current bytes (cached in his mount), then restores the first version
    drive_b = mounted_drive(live_server, bob)
    doc_b = drive_b.path("Hist", "notes.txt")
    wait_until(lambda: doc_b.exists() and cat(doc_b) == contents[2], message="bob sees the third version")
    out = oaiofs("restore", str(doc_b), "--version", str(first)).stdout
    assert f"version {first} restored" in out
    # the restoring mount shows the restored bytes, not the ones it had cached (the kernel may keep the old
    # size for attr_timeout = 1 s)
    wait_until(lambda: cat(doc_b) == contents[0], timeout=15, message="bob's mount shows the restored bytes")
    wait_until(lambda: cat(doc) == contents[0], timeout=60, message="alice's mount shows the restored bytes")
    after = versions(str(doc_b))
    assert len(after) == 4 and after[0]["current"] and after[0]["restored_from"] == first
    assert after[0]["author"] == bob and after[0]["sha256"] == listed[-1]["sha256"]

    # values history: listed (newest first), the first restored by bob through his mount
    vals = versions(str(drive_b.path("Hist", "values.json")))
    assert len(vals) == 3 and all(v["author"] == alice for v in vals)
    oaiofs("restore", str(drive_b.path("Hist", "values.json")), "--version", str(vals[-1]["version"]))
    assert api_a.get_object(oid)["values"] == {"_name": "Hist", "n": 1}
    wait_until(lambda: json.loads(values_file.read_text()) == {"_name": "Hist", "n": 1}, timeout=60,
               message="alice's mount shows the restored values")

    # carol (right r) may list but not restore: nothing changes
    drive_c = mounted_drive(live_server, carol)
    doc_c = drive_c.path("Hist", "notes.txt")
    wait_until(doc_c.exists, message="carol sees the object")
    assert len(versions(str(doc_c))) == 4
    before = api_a.get_object(oid)
    refused = oaiofs("restore", str(doc_c), "--version", str(listed[0]["version"]), check=False)
    assert refused.returncode == 1 and "'r'" in refused.stderr and "update" in refused.stderr
    refused = oaiofs("restore", oid, "notes.txt", "--version", str(listed[0]["version"]), "--server",
                     live_server.url, "--user", carol, password=PASSWORD, check=False)
    assert refused.returncode == 1 and "does not allow" in refused.stderr
    assert api_a.get_object(oid) == before

    # by object id: list and restore the second version as alice (password from the environment)
    remote = versions(f"{oid}/notes.txt", "--server", live_server.url, "--user", alice, password=PASSWORD)
    assert [v["version"] for v in remote] == [v["version"] for v in after]
    second = listed[1]["version"]
    oaiofs("restore", oid, "notes.txt", "--version", str(second), "--server", live_server.url, "--user", alice,
           password=PASSWORD)
    wait_until(lambda: cat(doc_b) == contents[1], timeout=60, message="bob's mount shows the second version")

    # hostile versions through the mount: precise messages, nothing changes
    before = api_a.get_object(oid)
    for bad, words in (("999999", "no version 999999"), ("-1", "version number"), ("٣", "version number"),
                       ("1.5", "version number")):
        result = oaiofs("restore", str(doc_b), "--version", bad, check=False)
        assert result.returncode in (1, 2) and words in result.stderr, (bad, result.stderr)
    result = oaiofs("versions", str(drive_b.path("Hist")), check=False)
    assert result.returncode == 1 and "versions are kept for files" in result.stderr
    assert api_a.get_object(oid) == before

    # a second mount of bob's with an empty cache reads back what the history made current
    drive_a.stop()
    drive_b.stop()
    fresh = mounted_drive(live_server, bob)
    wait_until(lambda: fresh.path("Hist", "notes.txt").exists(), message="fresh mount listed")
    assert cat(fresh.path("Hist", "notes.txt")) == contents[1]
    assert json.loads(fresh.path("Hist", "values.json").read_text()) == {"_name": "Hist", "n": 1}
    assert len(versions(str(fresh.path("Hist", "notes.txt")))) == 5
