"""One writer's history on a real mount (issue 12): values.json rewritten shorter. The test ends by
reading back through a second mount with an empty cache, and no conflict copy may appear (one mount
writes). fsync + more writes and appends after reopen are scenarios of tests/scenarios (run on the
VFS and on a real mount): fsync_then_write_on_one_descriptor, shell_append_loop."""
from __future__ import annotations

import json

import pytest

from tests.conftest import wait_until

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
