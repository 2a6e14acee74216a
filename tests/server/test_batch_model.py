"""Server: the batch commit's one-lookup, one-flush path against the plain PUT (seeded model test).

Every step sends one batch to object A and the same files one ``PUT`` at a time to object B
(a stale base, a file over a folder or under a file refused alone, exactly as a batch must).
Both objects go through the same sequence, so per-file results, file versions and the final
object documents must be equal field by field (folder mtimes and stamps aside: they are "now").
"""
from __future__ import annotations

import hashlib
import random

from oaiofs import protocol
from oaiofs.errors import OaioError
from tests.server.server_helpers import client, unique_id

_COMPARED = ("path", "kind", "size", "sha256", "version", "mode", "target")


def _put_like_batch(api, oid: str, item: protocol.BatchFile, bad_sha: bool) -> tuple[str, int | None]:
    """What a batch must answer for ``item``, found with a single PUT on ``oid``."""
    if bad_sha:
        return protocol.BATCH_ERROR, None
    try:
        doc = api.put_file(oid, item.path, item.data, base_version=item.base_version, mtime_ns=item.mtime_ns,
                           mode=item.mode)
    except OaioError as err:
        assert err.http_status == 409, err
        return protocol.BATCH_CONFLICT, None
    return protocol.BATCH_OK, doc["version"]


def _doc(api, oid: str) -> tuple[int, dict[str, tuple]]:
    doc = api.get_object(oid)
    files = {}
    for f in doc["files"]:
        files[f["path"]] = tuple(f[k] for k in _COMPARED)
    return doc["version"], files


def _mtimes(api, oid: str) -> dict[str, int]:
    return {f["path"]: f["mtime_ns"] for f in api.get_object(oid)["files"]}


def _candidates(rng: random.Random, step: int, files: list[str], folders: list[str]) -> list[str]:
    pool = [f"n{step}/{'/'.join(f'x{rng.randint(0, 2)}' for _ in range(rng.randint(0, 3)))}/new{i}".replace("//", "/")
            for i in range(6)]                                  # files in new, nested folders
    pool += [f"top{rng.randint(0, 30)}" for _ in range(3)]      # new or overwritten top-level files
    pool += rng.sample(files, min(4, len(files)))               # overwrites
    pool += rng.sample(folders, min(2, len(folders)))           # a file where a folder stands
    pool += [f + "/under" for f in rng.sample(files, min(2, len(files)))]   # a file under a file
    pool += [f"c{step}", f"c{step}/inside"]                     # collide inside the batch (either order)
    return list(dict.fromkeys(pool))


def test_seeded_batches_answer_exactly_like_single_puts(live_server, make_user):
    api = client(live_server, make_user("bmodel"))
    batched, single = (api.create_object({}, unique_id(p))["oaio_id"] for p in ("batched", "single"))
    rng = random.Random(1616)
    seen: dict[str, int] = {}
    for step in range(18):
        version, listing = _doc(api, single)
        files = sorted(p for p, f in listing.items() if f[1] == "file")
        folders = sorted(p for p, f in listing.items() if f[1] == "dir")
        chosen = _candidates(rng, step, files, folders)
        rng.shuffle(chosen)
        batch, bad = [], []
        for path in chosen[:rng.randint(1, 14)]:
            data = rng.randbytes(rng.choice([0, 1, 100, 4096, 20_000]))
            current = listing[path][4] if path in listing else 0
            base = rng.choice([None, None, current, current, current + 3, max(0, current - 1)])
            mtime_ns = rng.choice([None, rng.randint(0, 2**62)])
            mode = rng.choice([None, None, 0o600, 0o755])
            bad_sha = rng.random() < 0.05
            sha = hashlib.sha256(data + (b"!" if bad_sha else b"")).hexdigest()
            batch.append(protocol.BatchFile(path, data, sha, base_version=base, mtime_ns=mtime_ns, mode=mode))
            bad.append(bad_sha)
        if step % 5 == 4 and files:                              # deletes free names on both objects
            for path in rng.sample(files, min(3, len(files))):
                for oid in (batched, single):
                    api.delete_file(oid, path)
        results = api.commit_batch(batched, batch)
        expected = [_put_like_batch(api, single, item, bad_sha) for item, bad_sha in zip(batch, bad)]
        assert [r["path"] for r in results] == [item.path for item in batch]
        got = [(r["status"], r.get("version")) for r in results]
        assert got == expected, (step, [i.path for i in batch])
        for status, _version in got:
            seen[status] = seen.get(status, 0) + 1
        assert _doc(api, batched) == _doc(api, single), step
        given = {i.path: i.mtime_ns for i, (status, _v) in zip(batch, got) if status == "ok" and i.mtime_ns is not None}
        for oid in (batched, single):                            # folder and default mtimes are "now": not compared
            mtimes = _mtimes(api, oid)
            assert {p: mtimes[p] for p in given} == given, step
    assert min(seen.get(s, 0) for s in ("ok", "conflict", "error")) > 0, seen   # every kind of answer came up
    version, listing = _doc(api, batched)
    assert version > 40 and sum(f[1] == "file" for f in listing.values()) > 30      # the run did real work
    for path, fields in listing.items():
        if fields[1] == "file":
            assert api.get_file(batched, path) == api.get_file(single, path), path
