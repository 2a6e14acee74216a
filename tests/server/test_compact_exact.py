"""Compact answers are exact (issue 16): a CompactDoc lists every folder above a changed or removed
path and the version it was built on, so ``expand`` (vfs/compact.py) turns the document before a
change plus the change's compact answer into exactly the server's ``GET`` of the object (the whole
dict: every field, every folder mtime, the file order).

A seeded generator drives the real server over HTTP with every kind of change: batches (new files
in new nested folders, overwrites, a stale base among fresh files), ``PUT`` of one file, mkdir of
nested folders, links, chmod/utimes, deletes of files and folders, moves of files and folders
between folders (also over an existing file). After each change the built document is compared
with ``GET``. Plus hostile and old-server answers ``expand`` must refuse.
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any, Callable

import pytest

from oaiofs import protocol
from oaiofs.client.api import ApiClient
from oaiofs.client.uploads import TusUploader
from oaiofs.errors import OaioError
from oaiofs.vfs.compact import expand

pytestmark = pytest.mark.timeout(300)

SEGMENTS = ["a", "b", "c d", "é"]


def _random_path(rng: random.Random, leaf: str) -> str:
    depth = rng.randint(0, 3)
    return "/".join([rng.choice(SEGMENTS) for _ in range(depth)] + [leaf])


def _batch_file(path: str, data: bytes, base: int | None = None) -> protocol.BatchFile:
    return protocol.BatchFile(path, data, hashlib.sha256(data).hexdigest(), base)


class Model:
    """Picks the next change from the server's current document."""

    def __init__(self, api: ApiClient, oaio_id: str, rng: random.Random, tmp: Path) -> None:
        self.api, self.oaio_id, self.rng, self.tmp = api, oaio_id, rng, tmp
        self.counter = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def entries(self, doc: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
        return [f for f in doc["files"] if kind is None or f["kind"] == kind]

    def free_path(self, doc: dict[str, Any], leaf: str) -> str | None:
        """A new path whose parents are folders (or missing), never a file."""
        taken = {f["path"]: f["kind"] for f in doc["files"]}
        for _ in range(20):
            path = _random_path(self.rng, leaf)
            if path not in taken and all(taken.get(p, "dir") == "dir" for p in protocol.parent_dirs(path)):
                return path
        return None

    def step(self, doc: dict[str, Any]) -> tuple[str, dict[str, Any], bool] | None:
        """Make one change; (its name, the compact answer, whether it added/removed names)."""
        rng, api, oid = self.rng, self.api, self.oaio_id
        kind = rng.choice(["batch", "batch", "put", "tus", "mkdir", "link", "meta", "delete", "move", "move"])
        files = self.entries(doc, "file")
        if kind == "batch":
            batch: list[protocol.BatchFile] = []
            paths: set[str] = set()
            for _ in range(rng.randint(1, 4)):
                if files and rng.random() < 0.3:
                    old = rng.choice(files)
                    stale = rng.random() < 0.3           # a stale base conflicts that file only
                    if old["path"] not in paths:
                        batch.append(_batch_file(old["path"], self.fresh("over").encode(),
                                                 old["version"] - 1 if stale else old["version"]))
                        paths.add(old["path"])
                else:
                    path = self.free_path(doc, self.fresh("f") + ".txt")
                    if path and path not in paths and not any(p.startswith(path + "/") for p in paths) \
                            and not any(path.startswith(p + "/") for p in paths):
                        batch.append(_batch_file(path, self.fresh("data").encode()))
                        paths.add(path)
            if not batch:
                return None
            return "batch", api.commit_batch_answer(oid, batch, compact=True), True
        if kind == "put":
            path = self.free_path(doc, self.fresh("p") + ".bin")
            if path is None:
                return None
            info = api._json("PUT", api._file_path(protocol.PATH_FILE, oid, path), params={"compact": "true"},
                             data=b"put " + path.encode(), headers={"Content-Type": "application/octet-stream"})
            assert info["path"] == path and "object" in info, info
            return "put", info["object"], True
        if kind == "tus":                    # a tus upload answers a version; its file info the CompactDoc
            path = self.free_path(doc, self.fresh("t") + ".bin")
            if path is None:
                return None
            local = self.tmp / self.fresh("local")
            local.write_bytes(b"tus " + path.encode())
            version = TusUploader(api).upload_file(local, oid, path)["version"]
            info = api.file_info(oid, path, compact=True)
            assert info["version"] == version and info["object"]["version"] == version, info
            return "tus", info["object"], True
        if kind == "mkdir":
            path = self.free_path(doc, self.fresh("dir"))
            return ("mkdir", api.make_dir(oid, path, compact=True), True) if path else None
        if kind == "link":
            path = self.free_path(doc, self.fresh("ln"))
            return ("link", api.make_link(oid, path, "../x", compact=True), True) if path else None
        entries = self.entries(doc)
        if not entries:
            return None
        entry = rng.choice(entries)
        if kind == "meta":
            if rng.random() < 0.5:
                return "meta", api.set_file_meta(oid, entry["path"], mode=0o700, compact=True), False
            return "meta", api.set_file_meta(oid, entry["path"], mtime_ns=1_500_000_000_123_456_789,
                                             compact=True), False
        if kind == "delete":
            return "delete", api.delete_file(oid, entry["path"], compact=True), True
        # move: to a new place (maybe in new nested folders), or a file over another file
        others = [f for f in files if f["path"] != entry["path"]]
        if entry["kind"] == "file" and others and rng.random() < 0.3:
            dst = rng.choice(others)["path"]
        else:
            dst = self.free_path(doc, self.fresh("m"))
            if dst is None or dst.startswith(entry["path"] + "/"):
                return None
        return "move", api.move(oid, entry["path"], dst, overwrite=True, compact=True), True


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_document_built_from_each_compact_answer_equals_get(live_server: Any, make_user: Callable[..., str],
                                                                 api_for: Callable[..., ApiClient],
                                                                 tmp_path: Path, seed: int) -> None:
    api = api_for(make_user("exact"))
    oid = api.create_object({"seed": seed})["oaio_id"]
    model = Model(api, oid, random.Random(seed), tmp_path)
    doc = api.get_object(oid)
    kinds: dict[str, int] = {}
    for _ in range(40):
        try:
            made = model.step(doc)
        except OaioError as err:           # a refused change (e.g. a file in the way) changes nothing
            assert api.get_object(oid) == doc, err
            continue
        if made is None:
            continue
        name, answer, touch = made
        server = api.get_object(oid)
        if answer.get("version") == doc["version"]:          # a batch of conflicts only: no change
            assert server == doc
            continue
        built = expand(doc, answer, touch)
        assert built == server, (name, answer)
        kinds[name] = kinds.get(name, 0) + 1
        doc = server
    assert set(kinds) >= {"batch", "put", "tus", "mkdir", "link", "meta", "delete", "move"}, kinds
    assert any("/" in f["path"] for f in doc["files"] if f["kind"] == "file"), doc["files"]


def test_a_move_between_nested_folders_lists_both_folders(api_for: Callable[..., ApiClient],
                                                           make_user: Callable[..., str]) -> None:
    api = api_for(make_user("exactmove"))
    oid = api.create_object({})["oaio_id"]
    api.commit_batch(oid, [_batch_file("x/y/one.txt", b"1"), _batch_file("p/q/two.txt", b"2")])
    before = api.get_object(oid)
    answer = api.move(oid, "x/y/one.txt", "p/q/r/one.txt", compact=True)
    listed = {f["path"] for f in answer["changed"]}
    assert {"x", "x/y", "p", "p/q", "p/q/r", "p/q/r/one.txt"} <= listed, listed
    assert answer["previous_version"] == before["version"] and answer["removed"] == ["x/y/one.txt"]
    assert expand(before, answer, touch=True) == api.get_object(oid)


def test_expand_refuses_answers_of_older_servers_and_of_other_versions(api_for: Callable[..., ApiClient],
                                                                       make_user: Callable[..., str]) -> None:
    api = api_for(make_user("exactold"))
    oid = api.create_object({})["oaio_id"]
    api.commit_batch(oid, [_batch_file("a/b/f.txt", b"1")])
    before = api.get_object(oid)
    answer = api.make_dir(oid, "a/b/new", compact=True)
    assert expand(before, answer, touch=True) == api.get_object(oid)
    # an older server listed only the new entry: the touched folder "a/b" is unknown, so fetch
    old_style = {k: v for k, v in answer.items() if k not in ("previous_version", "updated")}
    old_style["changed"] = [f for f in answer["changed"] if f["path"] == "a/b/new"]
    assert expand(before, old_style, touch=True) is None
    # a document of another version, or of another object, or another right: fetch
    assert expand(dict(before, version=before["version"] - 1), answer, touch=True) is None
    assert expand(before, dict(answer, oaio_id="other"), touch=True) is None
    assert expand(before, dict(answer, access_right="r"), touch=True) is None
    assert expand(before, dict(answer, previous_version=answer["version"]), touch=True) is None
    # a batch answer without any committed file (only conflicts) bumps nothing
    stale = api.commit_batch_answer(oid, [_batch_file("a/b/f.txt", b"2", base=0)], compact=True)
    assert stale["results"][0]["status"] == protocol.BATCH_CONFLICT
    assert stale["version"] == stale["previous_version"] == api.get_object(oid)["version"]
    assert expand(api.get_object(oid), stale, touch=True) is None


def test_file_info_answers_the_commits_compact_doc_only_while_the_object_is_unchanged(
        api_for: Callable[..., ApiClient], make_user: Callable[..., str], tmp_path: Path) -> None:
    """``GET …/info/{path}?compact=true`` after a tus upload: the commit's CompactDoc, which
    ``expand`` turns into the server's document; once the object moved on, no ``object`` (the
    client fetches). Hostile input gets a precise error and changes nothing."""
    owner, stranger = make_user("infoowner"), make_user("infostranger")
    api = api_for(owner)
    oid = api.create_object({})["oaio_id"]
    api.make_dir(oid, "d")
    before = api.get_object(oid)
    local = tmp_path / "big.bin"
    local.write_bytes(b"z" * (300 << 10))
    version = TusUploader(api).upload_file(local, oid, "d/e/big.bin")["version"]
    info = api.file_info(oid, "d/e/big.bin", compact=True)
    assert info["path"] == "d/e/big.bin" and info["version"] == version and "blob_key" not in info
    assert expand(before, info["object"], touch=True) == api.get_object(oid)
    assert "object" not in api.file_info(oid, "d/e/big.bin")           # only when asked
    api.make_dir(oid, "later")
    moved_on = api.file_info(oid, "d/e/big.bin", compact=True)
    assert moved_on["version"] == version and "object" not in moved_on
    stored = api.get_object(oid)
    other = api_for(stranger)
    for call, status in [(lambda: api.file_info(oid, "d"), 404),               # a folder
                         (lambda: api.file_info(oid, "nothing.txt"), 404),
                         (lambda: api.file_info("no-such-object", "x"), 404),
                         (lambda: api.file_info(oid, "../etc/passwd"), 422),
                         (lambda: other.file_info(oid, "d/e/big.bin"), 404)]:  # not subscribed
        with pytest.raises(OaioError) as err:
            call()
        assert err.value.http_status == status, err.value
    info_path = protocol.PATH_FILE_INFO.format(oaio_id=oid, path="d/e/big.bin")
    for bad, status in (("NaN", 422), ("1e999", 422), ("%ff", 400)):
        resp = api.request("GET", info_path + "?compact=" + bad, expect=range(200, 600))
        assert resp.status_code == status and "error" in resp.json(), (bad, resp.status_code, resp.text)
    assert api.get_object(oid) == stored
