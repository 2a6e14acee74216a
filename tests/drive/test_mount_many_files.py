"""Issue 16 through a real mount: ``git clone`` of a generated repository of 120 files into
the drive (the per-file path, the patched views and the journal's batch commits together), then a
second mount with an empty cache reads the same clone back and git finds it clean."""
from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import wait_until
from tests.drive.helpers import git, mount_status, tree_bytes

pytestmark = pytest.mark.timeout(900)

FILES = 120


def test_git_clone_of_a_few_hundred_files_lands_and_reads_back(tmp_path, live_server, user_api, mounted_drive):
    source = tmp_path / "source"
    source.mkdir()
    for i in range(FILES):
        path = source / f"pkg{i % 15}" / f"mod{i:04d}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"# module {i}\n" + "".join(f"v{j} = {i * j}\n" for j in range(i % 50)))
    (source / "empty.txt").write_text("")
    git(source, "init", "-q")
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "many files")

    user, api = user_api
    oid = api.create_object({"_name": "Clone"})["oaio_id"]
    drive = mounted_drive(live_server, user)
    subprocess.run(["git", "clone", "-q", str(source), str(drive.path("Clone", "repo"))], check=True,
                   capture_output=True, env=dict(os.environ, HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1"))
    repo = drive.path("Clone", "repo")
    assert git(repo, "status", "--porcelain") == ""
    want = tree_bytes(repo)
    worktree = {p: data for p, data in want.items() if not p.startswith(".git/")}
    assert worktree == {p: data for p, data in tree_bytes(source).items() if not p.startswith(".git/")}
    assert len(worktree) == FILES + 1

    wait_until(lambda: not mount_status(drive.mountpoint)["ops"], timeout=600, message="uploads drained")
    status = mount_status(drive.mountpoint)
    assert not status["conflicts"] and not status["failed"], status
    on_server = {f["path"] for f in api.get_object(oid)["files"] if f.get("kind", "file") == "file"}
    assert {f"repo/{p}" for p in want} <= on_server
    assert not [p for p in on_server if "(conflict" in p]

    other = mounted_drive(live_server, user)                  # a second mount, empty cache
    again = other.path("Clone", "repo")
    assert tree_bytes(again) == want
    assert git(again, "status", "--porcelain") == ""
    git(again, "fsck", "--full")
