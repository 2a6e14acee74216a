"""``oaiofs share/unshare/access/info`` through a running mount (no password) and by object id (issue 17)."""
from __future__ import annotations

import json
import os
import random

import pytest

from oaiofs import protocol
from tests.conftest import PASSWORD, wait_until
from tests.drive.helpers import oaiofs

pytestmark = pytest.mark.timeout(180)


def access_json(target: str, *extra: str, password: str | None = None) -> list[dict[str, str]]:
    return json.loads(oaiofs("access", target, "--json", *extra, password=password).stdout)


def test_share_access_info_by_path_and_id(live_server, make_user, api_for, mounted_drive):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    api_a, api_b = api_for(alice), api_for(bob)
    oid = api_a.create_object({"_name": "Shared"})["oaio_id"]
    api_a.put_file(oid, "docs/plan.txt", b"the plan")
    drive_a = mounted_drive(live_server, alice)
    folder = drive_a.path("Shared")
    wait_until(lambda: folder.joinpath("docs", "plan.txt").exists(), message="object listed")

    # info and the id xattr, through the mount (the child has no password at all)
    assert os.getxattr(folder, protocol.XATTR_ID).decode() == oid
    assert protocol.XATTR_ID in os.listxattr(folder)
    info = json.loads(oaiofs("info", str(folder), "--json").stdout)
    assert (info["oaio_id"], info["owner"], info["access_right"], info["sync"]) == (oid, alice, "C", "synced")
    assert info["version"] == api_a.get_object(oid)["version"]
    finfo = json.loads(oaiofs("info", str(folder / "docs" / "plan.txt"), "--json").stdout)
    assert finfo["oaio_id"] == oid and finfo["path"] == "docs/plan.txt" and finfo["size"] == 8
    assert finfo["sync"] in ("remote", "cached") and finfo["version"] >= 1
    text = oaiofs("info", str(folder)).stdout
    assert oid in text and alice in text

    # share by a path deep inside the object, then by id with --server/--user
    out = oaiofs("share", str(folder / "docs" / "plan.txt"), bob, "U").stdout
    assert bob in out and "U" in out
    oaiofs("share", oid, carol, "r", "--server", live_server.url, "--user", alice, password=PASSWORD)
    expected = sorted([{"username": alice, "access_right": "C"}, {"username": bob, "access_right": "U"},
                       {"username": carol, "access_right": "r"}], key=protocol.userz_access_sort_key)
    assert api_a.subscriptions(oid) == expected
    wait_until(lambda: access_json(str(folder)) == expected, message="access through the mount")
    assert access_json(oid, "--server", live_server.url, "--user", carol, password=PASSWORD) == expected
    listing = oaiofs("access", str(folder)).stdout.splitlines()
    assert [line.split()[:2] for line in listing] == [[e["access_right"], e["username"]] for e in expected]

    # hostile: only the creator shares; unknown users, bad rights, paths outside a mount, the root
    drive_b = mounted_drive(live_server, bob)
    wait_until(lambda: drive_b.path("Shared", "docs", "plan.txt").exists(), message="share visible to bob")
    refused = oaiofs("share", str(drive_b.path("Shared")), carol, "D", check=False)
    assert refused.returncode == 1 and "only the creator" in refused.stderr
    nobody = oaiofs("share", str(folder), "nobody-" + oid[-6:], "r", check=False)
    assert nobody.returncode == 1 and "not found" in nobody.stderr
    assert oaiofs("share", str(folder), bob, "C", check=False).returncode == 2     # C is never granted
    outside = oaiofs("access", "/tmp", check=False)
    assert outside.returncode == 1 and "not inside an oaiofs mount" in outside.stderr
    root = oaiofs("share", str(drive_a.mountpoint), bob, "r", check=False)
    assert root.returncode == 1 and "root" in root.stderr
    assert api_a.subscriptions(oid) == expected                                    # nothing changed

    # bob leaves the share from his own mount; alice removes carol by id
    oaiofs("unshare", str(drive_b.path("Shared", "docs")), bob)
    wait_until(lambda: not drive_b.path("Shared").exists(), message="left share disappears from bob's mount")
    oaiofs("unshare", oid, carol, "--server", live_server.url, "--user", alice, password=PASSWORD)
    assert api_a.subscriptions(oid) == [{"username": alice, "access_right": "C"}]
    assert api_b.list_objects()[0] == []
    wrong = oaiofs("info", oid, "--server", live_server.url, "--user", bob, password=PASSWORD, check=False)
    assert wrong.returncode == 1 and "not found" in wrong.stderr

    # a fresh mount of a new subscriber (empty cache) reads the shared bytes
    oaiofs("share", str(folder), carol, "r")
    drive_c = mounted_drive(live_server, carol)
    wait_until(lambda: drive_c.path("Shared", "docs", "plan.txt").exists(), message="carol sees the share")
    assert drive_c.path("Shared", "docs", "plan.txt").read_bytes() == b"the plan"
    cinfo = json.loads(oaiofs("info", str(drive_c.path("Shared")), "--json").stdout)
    assert (cinfo["access_right"], cinfo["owner"]) == ("r", alice)


def test_random_share_sequences_match_a_model(live_server, make_user, api_for, mounted_drive):
    """Seeded random share/unshare through the mount against a dict model of the rights."""
    rng = random.Random(17)
    owner = make_user("owner")
    others = [make_user(f"u{i}") for i in range(3)]
    api = api_for(owner)
    oid = api.create_object({"_name": "Model"})["oaio_id"]
    drive = mounted_drive(live_server, owner)
    folder = drive.path("Model")
    wait_until(folder.is_dir, message="object listed")
    model = {owner: "C"}
    for _ in range(8):
        user, right = rng.choice(others), rng.choice(["r", "U", "D", "x"])
        oaiofs("share", str(folder), user, right)
        if right == "x":
            model.pop(user, None)
        else:
            model[user] = right
        expected = sorted(({"username": u, "access_right": r} for u, r in model.items()),
                          key=protocol.userz_access_sort_key)
        assert api.subscriptions(oid) == expected
    wait_until(lambda: access_json(str(folder)) == expected, message="mount's access list")
