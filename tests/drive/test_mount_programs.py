"""Real programs through a real mount (issue 12): each scenario ends with a second mount with an
empty cache reading the same bytes, and after all of them no conflict copy exists (one mount writes)."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess

import pytest

from tests.conftest import wait_until
from tests.drive.helpers import git, mount_status, tree_bytes

pytestmark = pytest.mark.timeout(600)


def test_real_programs_keep_every_byte_and_make_no_conflict_copy(live_server, user_api, mounted_drive):
    user, api = user_api
    oid = api.create_object({"_name": "Progs", "drop": "x" * 200})["oaio_id"]
    drive = mounted_drive(live_server, user)
    obj = drive.path("Progs")

    # 1. the append loop of the issue, wc -l between appends
    (obj / "log").mkdir()
    script = 'for i in $(seq 50); do echo "line $i" >> log.txt; n=$(wc -l < log.txt); ' \
             '[ "$n" = "$i" ] || echo "after $i: wc says $n"; done'
    out = subprocess.run(["bash", "-c", script], cwd=obj / "log", capture_output=True, text=True, check=True)
    assert out.stdout == ""

    # 2. append + fsync per line (one descriptor), then reopen + append + fsync (new descriptors)
    with open(obj / "fsync.log", "ab") as fh:
        for i in range(40):
            fh.write(f"entry {i}\n".encode())
            fh.flush()
            os.fsync(fh.fileno())
    for i in range(40, 60):
        with open(obj / "fsync.log", "ab") as fh:
            fh.write(f"entry {i}\n".encode())
            fh.flush()
            os.fsync(fh.fileno())
    assert (obj / "fsync.log").read_bytes() == b"".join(f"entry {i}\n".encode() for i in range(60))

    # 3. sqlite, default rollback journal and WAL, 1000 rows in transactions, synchronous left as is
    for mode in ("delete", "wal"):
        db = sqlite3.connect(obj / f"{mode}.db")
        db.execute(f"PRAGMA journal_mode={mode}")
        db.execute("CREATE TABLE t (i INTEGER PRIMARY KEY, s TEXT)")
        for start in range(0, 1000, 50):
            with db:
                db.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"row {i}" * 3) for i in range(start, start + 50)])
        if mode == "wal":
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*), sum(i) FROM t").fetchone() == (1000, sum(range(1000)))
        db.close()

    # 4. git init / commit / gc / fsck
    repo = obj / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    for n in range(3):
        (repo / f"f{n}.txt").write_text(f"version {n}\n" * 100)
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", f"commit {n}")
    git(repo, "gc", "-q")
    git(repo, "fsck", "--full")
    assert len(git(repo, "log", "--oneline").splitlines()) == 3

    # 5. editor save pattern: swap file written and fsynced repeatedly, then renamed over the file
    (obj / "doc.txt").write_text("draft 0\n")
    for n in range(1, 4):
        swap = obj / ".doc.txt.swp"
        fd = os.open(swap, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
        for k in range(5):
            os.pwrite(fd, f"swap {n}.{k}\n".encode() * 10, 0)
            os.fsync(fd)
        os.close(fd)
        tmp = obj / "doc.txt.tmp"
        with open(tmp, "w") as fh:
            fh.write(f"draft {n}\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, obj / "doc.txt")
        os.remove(swap)
    assert (obj / "doc.txt").read_text() == "draft 3\n"

    # 6. values.json shrinking and growing (O_TRUNC rewrites)
    values = obj / "values.json"
    with open(values, "w") as fh:
        json.dump({"_name": "Progs"}, fh)
    with open(values, "w") as fh:
        json.dump({"_name": "Progs", "grown": list(range(100))}, fh)
    with open(values, "w") as fh:
        json.dump({"_name": "Progs", "k": 1}, fh)
    assert json.loads(values.read_text()) == {"_name": "Progs", "k": 1}

    # everything reaches the server; a second mount with an empty cache reads the same files
    want = tree_bytes(obj)
    assert "values.json" in want
    wait_until(lambda: not mount_status(drive.mountpoint)["ops"], timeout=300, message="uploads drained")
    assert api.get_object(oid)["values"] == {"_name": "Progs", "k": 1}
    status = mount_status(drive.mountpoint)
    assert not status["conflicts"] and not status["failed"], status
    paths = [f["path"] for f in api.get_object(oid)["files"]]
    assert not [p for p in paths if "(conflict" in p], paths
    other = mounted_drive(live_server, user)
    got = tree_bytes(other.path("Progs"))
    assert sorted(got) == sorted(want)
    for name in want:
        if name != "values.json":
            assert got[name] == want[name], name
    assert json.loads(got["values.json"]) == {"_name": "Progs", "k": 1}
    db = sqlite3.connect(other.path("Progs", "wal.db"))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
