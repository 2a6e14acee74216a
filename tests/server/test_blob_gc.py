"""Blob garbage collection against the real server (SQLite + local blobs, or PostgreSQL + S3):
data of replaced and deleted files goes after the grace period, referenced data never."""
from __future__ import annotations

import hashlib
import random
import re
import subprocess
import sys
import threading

import requests

from oaiofs import protocol
from oaiofs.server.blobs import blob_key
from tests.conftest import PASSWORD, wait_until

from .server_helpers import unique_id

# these tests are about the collector: the version history keeps only each existing file's current
# version (tests/server/test_history.py covers what the history keeps)
CURRENT_ONLY = {"OAIOFS_HISTORY_KEEP_VERSIONS": "1", "OAIOFS_HISTORY_KEEP_DAYS": "0"}
_KEY = re.compile(r"sha256/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}")
_LIST_KEYS = """
import os, sys
from pathlib import Path
from oaiofs.server.blobs import open_blob_store
store = open_blob_store(os.environ.get("OAIOFS_BLOBS_URL"), Path(sys.argv[1]), os.environ.get("OAIOFS_S3_ENDPOINT"))
for key, _mtime, _size in store.list_blobs():
    print(key)
"""


def stored_keys(server) -> set[str]:
    """Every blob key in the server's blob store (local folder or S3 prefix)."""
    out = subprocess.run([sys.executable, "-c", _LIST_KEYS, str(server.data_dir)], env=server.env,
                         check=True, capture_output=True, text=True).stdout
    return set(out.split())


def gc(server, *args: str) -> tuple[set[str], set[str], str]:
    """Run ``oaiofs gc``; returns (removed or would-be-removed keys, keys in their grace period, output)."""
    out = subprocess.run([sys.executable, "-m", "oaiofs", "gc", "--data", str(server.data_dir), *args],
                         env=server.env, check=True, capture_output=True, text=True).stdout
    def keys(prefix: str) -> set[str]:
        return {_KEY.search(line).group(0) for line in out.splitlines() if line.startswith(prefix) and _KEY.search(line)}
    return keys(("removed sha256", "would remove sha256")), keys("unreferenced, in its grace"), out


def key(data: bytes) -> str:
    return blob_key(hashlib.sha256(data).hexdigest())


def _session(server, user: str) -> requests.Session:
    s = requests.Session()
    s.auth = (user, PASSWORD)
    return s


def _file_url(server, oaio_id: str, path: str) -> str:
    return server.url + protocol.PATH_FILE.replace("{oaio_id}", oaio_id).replace("{path}", path)


def test_gc_removes_exactly_the_unreferenced_blobs(server_factory):
    """A seeded random history of puts, replacements (with shared contents) and deletes, and a
    cart; ``oaiofs gc`` removes exactly the blobs no file or cart refers to, after the grace period.
    (History current-only and trash retention 0: tests/server/test_history.py and test_trash.py cover those.)"""
    server = server_factory(env={**CURRENT_ONLY, "OAIOFS_TRASH_RETENTION_S": "0"})
    user = server.add_user("gc-user")
    s = _session(server, user)
    oaio_id = unique_id()
    assert s.post(server.url + "/api/v1/objects", json={"oaio_id": oaio_id, "values": {}}).status_code == 201
    rng = random.Random(1713)
    pool = [f"content {i}\n".encode() * (i + 1) for i in range(7)]
    current: dict[str, bytes] = {}
    written: set[str] = set()
    for _ in range(30):
        path = rng.choice(["a.txt", "b.txt", "d/c.bin", "d/e.bin"])
        if path in current and rng.random() < 0.3:
            assert s.delete(_file_url(server, oaio_id, path)).status_code == 200
            del current[path]
        else:
            data = rng.choice(pool)
            assert s.put(_file_url(server, oaio_id, path), data=data).status_code == 200
            current[path], _ = data, written.add(key(data))
    # a cart pins what a file holds now; the file is then replaced
    pinned_path = next(iter(current))
    pinned = current[pinned_path]
    cart = server.url + protocol.PATH_CART.format(uid="gc-cart")
    body = {"fileids": [{"id": protocol.cart_file_id(oaio_id, pinned_path), "path": "p",
                         "hashtype": "sha256", "hashsum": hashlib.sha256(pinned).hexdigest()}]}
    assert s.post(cart, json=body).status_code == 201
    replacement = b"a replacement nobody else has\n"
    assert s.put(_file_url(server, oaio_id, pinned_path), data=replacement).status_code == 200
    current[pinned_path] = replacement
    written.add(key(replacement))

    assert stored_keys(server) == written
    referenced = {key(d) for d in current.values()} | {key(pinned)}
    expected = written - referenced
    assert expected, "the random history should leave garbage"
    assert gc(server)[:2] == (set(), expected)                 # default grace: noted, nothing removed
    assert gc(server, "--dry-run", "--grace", "0")[0] == expected
    assert stored_keys(server) == written
    assert gc(server, "--grace", "0")[0] == expected
    assert stored_keys(server) == referenced
    for path, data in current.items():                         # every file still reads back
        assert s.get(_file_url(server, oaio_id, path)).content == data
    assert s.get(cart + "/files/p").content == pinned
    assert gc(server, "--grace", "0")[0] == set()
    # once the cart is gone, its pinned blob goes too (unless a file still holds the same bytes)
    assert s.delete(cart).status_code == 200
    gone = set() if key(pinned) in {key(d) for d in current.values()} else {key(pinned)}
    assert gc(server, "--grace", "0")[0] == gone
    assert stored_keys(server) == {key(d) for d in current.values()}


def test_background_gc_after_the_grace_period(server_factory):
    server = server_factory(env={"OAIOFS_BLOB_GC_GRACE_S": "1", "OAIOFS_PURGE_INTERVAL_S": "0.3", **CURRENT_ONLY,
                                 "OAIOFS_TRASH_RETENTION_S": "0"})
    user = server.add_user("gc-bg")
    s = _session(server, user)
    oaio_id = unique_id()
    assert s.post(server.url + "/api/v1/objects", json={"oaio_id": oaio_id, "values": {}}).status_code == 201
    old, new, other = b"old bytes\n", b"new bytes\n", b"deleted bytes\n"
    url = _file_url(server, oaio_id, "f.txt")
    assert s.put(url, data=old).status_code == 200
    assert s.put(_file_url(server, oaio_id, "g.txt"), data=other).status_code == 200
    assert s.put(url, data=new).status_code == 200
    assert s.delete(_file_url(server, oaio_id, "g.txt")).status_code == 200
    wait_until(lambda: stored_keys(server) == {key(new)}, timeout=120, interval=0.5,
               message="the background collector to remove the replaced and the deleted file's data")
    assert s.get(url).content == new


def test_blobs_committed_while_the_collector_runs_are_never_collected(server_factory):
    """The collector runs back to back with no grace period while files are replaced by bytes
    that are (or were just) unreferenced: a commit that dedupes onto a blob must never lose it."""
    server = server_factory(env={"OAIOFS_BLOB_GC_GRACE_S": "0", "OAIOFS_PURGE_INTERVAL_S": "0.01", **CURRENT_ONLY})
    user = server.add_user("gc-race")
    s = _session(server, user)
    oaio_id = unique_id()
    assert s.post(server.url + "/api/v1/objects", json={"oaio_id": oaio_id, "values": {}}).status_code == 201
    contents = [b"ping\n", b"pong\n"]
    errors: list[str] = []
    stop = threading.Event()

    def collector() -> None:          # a second collector (the CLI) racing the server's own
        while not stop.is_set():
            try:
                gc(server, "--grace", "0")
            except subprocess.CalledProcessError as exc:
                errors.append(exc.stdout + exc.stderr)

    thread = threading.Thread(target=collector)
    thread.start()
    try:
        for i in range(30):
            data = contents[i % 2]
            url = _file_url(server, oaio_id, "f.txt")
            assert s.put(url, data=data).status_code == 200      # the other content is unreferenced now
            got = s.get(url)
            assert got.status_code == 200 and got.content == data, (i, got.status_code, got.text[:200])
    finally:
        stop.set()
        thread.join(timeout=120)
    assert not errors, errors[:1]
    assert key(contents[1]) in stored_keys(server)
