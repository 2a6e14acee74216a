"""The S3 blob store against a real SeaweedFS S3 server (multipart staging, ranged reads, cleanup)."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pytest

from oaiofs.errors import Gone, InvalidValue, NotFound, OffsetMismatch, Unavailable
from oaiofs.server.blobs import BlobStore, blob_key
from oaiofs.server.blobs.s3 import MIN_PART_SIZE, S3BlobStore, open_s3_store
from tests.scale.scale_fixtures import (MiB, list_keys, open_multipart_uploads,  # noqa: F401
                                        pg_database, s3_client, s3_prefix, services)

pytestmark = pytest.mark.scale


@pytest.fixture
def store(services: dict[str, str], s3_prefix: str) -> S3BlobStore:
    return S3BlobStore(s3_client(services), services["OAIOFS_TEST_S3_BUCKET"], s3_prefix, part_size=MIN_PART_SIZE)


def other_process_store(store: S3BlobStore, services: dict[str, str]) -> S3BlobStore:
    """A second store on the same bucket and prefix with its own client (as in another process)."""
    return S3BlobStore(s3_client(services), store.bucket, store.prefix, part_size=store.part_size)


def write_in_chunks(store: S3BlobStore, upload_id: str, data: bytes, chunk: int,
                    state: dict[str, Any] | None = None, start: int = 0) -> dict[str, Any]:
    state = store.staging_create(upload_id) if state is None else state
    for offset in range(start, len(data), chunk):
        # the state goes through JSON like Upload.staging_json does
        state = json.loads(json.dumps(store.staging_write(upload_id, offset, data[offset:offset + chunk], state)))
    return state


def mpus(store: S3BlobStore) -> list[dict[str, Any]]:
    return open_multipart_uploads(store.client, store.bucket, store.prefix)


def staging_keys(store: S3BlobStore) -> list[str]:
    return list_keys(store.client, store.bucket, store.prefix + "staging/")


def commit(store: S3BlobStore, upload_id: str, state: dict[str, Any]) -> str:
    """Read the staged bytes for their sha256 (as the upload service does) and commit them."""
    digest = hashlib.sha256()
    for piece in store.staging_read(upload_id, state):
        digest.update(piece)
    key = blob_key(digest.hexdigest())
    store.staging_commit(upload_id, key, state)
    return key


def test_implements_the_blob_store_protocol(store: S3BlobStore) -> None:
    assert isinstance(store, BlobStore)
    assert store.local_path(blob_key("0" * 64)) is None


def test_small_chunks_collect_into_5_mib_parts(store: S3BlobStore) -> None:
    data = os.urandom(12 * MiB + 4321)
    state = write_in_chunks(store, "small", data, chunk=MiB)
    assert [p[2] for p in state["parts"]] == [5 * MiB, 5 * MiB]      # S3's minimum part size
    assert state["tail"] == 2 * MiB + 4321 and state["mpu"]
    assert [u["UploadId"] for u in mpus(store)] == [state["mpu"]]
    # at most the current and the previous tail generation are kept
    assert len([k for k in staging_keys(store) if "/tail-" in k]) <= 2

    key = commit(store, "small", state)
    assert key == blob_key(hashlib.sha256(data).hexdigest())
    assert store.size(key) == len(data)
    assert b"".join(store.open_range(key)) == data
    assert staging_keys(store) == [] and mpus(store) == [] and store.staging_ids() == []


def test_large_chunks_become_parts_directly(store: S3BlobStore) -> None:
    data = os.urandom(2 * 6 * MiB + 100)
    state = write_in_chunks(store, "large", data, chunk=6 * MiB)
    assert [p[2] for p in state["parts"]] == [6 * MiB, 6 * MiB] and state["tail"] == 100
    key = commit(store, "large", state)
    assert b"".join(store.open_range(key)) == data


def test_small_upload_never_starts_a_multipart_upload(store: S3BlobStore) -> None:
    data = b"hello s3" * 1000
    state = write_in_chunks(store, "tiny", data, chunk=3000)
    assert state["mpu"] is None and mpus(store) == []
    key = commit(store, "tiny", state)
    assert b"".join(store.open_range(key)) == data


def test_empty_upload(store: S3BlobStore) -> None:
    state = store.staging_create("empty")
    key = commit(store, "empty", state)
    assert key == blob_key(hashlib.sha256(b"").hexdigest())
    assert store.size(key) == 0 and b"".join(store.open_range(key)) == b""


def test_upload_continues_on_another_process(store: S3BlobStore, services: dict[str, str]) -> None:
    data = os.urandom(11 * MiB)
    state = write_in_chunks(store, "moving", data[:7 * MiB], chunk=2 * MiB)
    other = other_process_store(store, services)
    state = write_in_chunks(other, "moving", data, chunk=2 * MiB, state=state, start=7 * MiB)
    key = commit(store, "moving", state)
    assert b"".join(other.open_range(key)) == data


def test_a_write_whose_state_was_never_committed_is_harmless(store: S3BlobStore) -> None:
    """A crash between staging_write and the DB commit: the caller retries from its old state."""
    data = os.urandom(9 * MiB)
    before = write_in_chunks(store, "retry", data[:4 * MiB], chunk=MiB)
    store.staging_write("retry", 4 * MiB, os.urandom(3 * MiB), dict(before))   # lost: state never stored
    store.staging_write("retry", 4 * MiB, os.urandom(2 * MiB), dict(before))   # lost again
    state = write_in_chunks(store, "retry", data, chunk=MiB, state=before, start=4 * MiB)
    key = commit(store, "retry", state)
    assert b"".join(store.open_range(key)) == data


def test_a_write_that_loses_a_race_cannot_damage_the_winner(store: S3BlobStore, services: dict[str, str]) -> None:
    """Two processes write at the same offset from the same state; the database keeps only one state."""
    start, mine, theirs = os.urandom(MiB), os.urandom(2 * MiB), os.urandom(3 * MiB)
    base = write_in_chunks(store, "race", start, chunk=MiB)
    won = store.staging_write("race", MiB, mine, dict(base))
    other_process_store(store, services).staging_write("race", MiB, theirs, dict(base))
    assert b"".join(store.staging_read("race", won)) == start + mine


def test_a_part_replaced_by_a_racing_write_never_yields_wrong_bytes(store: S3BlobStore,
                                                                     services: dict[str, str]) -> None:
    """A losing write with other chunking re-uploads part 2 of the same multipart upload.

    Completion names every part by its ETag: SeaweedFS keeps both uploads of the part and
    assembles the winner's; AWS S3 keeps the last one and refuses the ETag, which the store
    reports as 410 Gone (the client starts the upload again). Never the loser's bytes.
    """
    start, mine, theirs = os.urandom(7 * MiB), os.urandom(4 * MiB), os.urandom(5 * MiB)
    base = write_in_chunks(store, "parts", start, chunk=MiB)                              # part 1 + 2 MiB tail
    assert base["mpu"] and base["tail"] == 2 * MiB
    won = store.staging_write("parts", 7 * MiB, mine, dict(base))                         # part 2: 6 MiB
    other_process_store(store, services).staging_write("parts", 7 * MiB, theirs, dict(base))   # part 2: 7 MiB
    try:
        staged = b"".join(store.staging_read("parts", won))
    except Gone:
        return
    assert staged == start + mine


def test_rewind_inside_the_tail_and_at_a_part_boundary(store: S3BlobStore) -> None:
    data = os.urandom(8 * MiB)
    state = write_in_chunks(store, "rewind", os.urandom(7 * MiB), chunk=MiB)   # 5 MiB part + 2 MiB tail
    state = store.staging_write("rewind", 5 * MiB + 10, b"", state)          # truncate the tail
    assert state["tail"] == 10
    state = store.staging_write("rewind", 5 * MiB, b"", state)               # back to the part boundary
    assert state["tail"] == 0 and len(state["parts"]) == 1
    state = store.staging_write("rewind", 0, b"", state)                      # drop everything
    assert state["parts"] == [] and state["tail"] == 0
    state = write_in_chunks(store, "rewind", data, chunk=3 * MiB, state=state)
    key = commit(store, "rewind", state)
    assert b"".join(store.open_range(key)) == data
    assert mpus(store) == []                                                 # the first MPU is gone too


def test_bad_offsets_are_refused_and_change_nothing(store: S3BlobStore) -> None:
    data = os.urandom(6 * MiB)
    state = write_in_chunks(store, "bad", data, chunk=MiB)                    # 5 MiB part + 1 MiB tail
    with pytest.raises(OffsetMismatch):
        store.staging_write("bad", len(data) + 1, b"x", state)                # a gap
    with pytest.raises(OffsetMismatch) as err:
        store.staging_write("bad", MiB, b"x", state)                          # inside an uploaded part
    assert err.value.detail["part_boundaries"] == [0, 5 * MiB]
    with pytest.raises(InvalidValue):
        store.staging_write("bad/../x", 0, b"x", {})
    key = commit(store, "bad", state)
    assert b"".join(store.open_range(key)) == data


def test_ranged_reads(store: S3BlobStore) -> None:
    data = os.urandom(3 * MiB + 17)
    key = commit(store, "ranges", write_in_chunks(store, "ranges", data, chunk=MiB))
    for start, end in [(0, 1), (5, 5 * 1024), (MiB - 1, 2 * MiB + 3), (len(data) - 1, len(data)),
                       (100, None), (0, len(data) + 999)]:
        assert b"".join(store.open_range(key, start, end)) == data[start:end], (start, end)
    assert b"".join(store.open_range(key, 7, 7)) == b""
    assert b"".join(store.open_range(key, len(data) + 5)) == b""              # past the end: nothing
    pieces = list(store.open_range(key))
    assert len(pieces) > 1 and max(map(len, pieces)) <= MiB                  # streamed, not one big read
    missing = blob_key("f" * 64)
    with pytest.raises(NotFound):
        store.open_range(missing, 0, 10)                                      # raised before streaming
    with pytest.raises(NotFound):
        store.size(missing)
    assert not store.exists(missing) and store.exists(key)
    store.delete(key)
    store.delete(key)                                                         # no error when missing
    assert not store.exists(key)


def test_staging_delete_aborts_the_multipart_upload(store: S3BlobStore) -> None:
    state = write_in_chunks(store, "abort", os.urandom(7 * MiB), chunk=MiB)
    assert mpus(store) and staging_keys(store) and store.staging_ids() == ["abort"]
    store.staging_delete("abort", state)
    assert mpus(store) == [] and staging_keys(store) == [] and store.staging_ids() == []
    store.staging_delete("abort", state)                                      # no error when gone
    with pytest.raises(NotFound):
        store.staging_commit("abort", blob_key("a" * 64), state)


def test_staging_delete_without_state_still_finds_the_multipart_upload(store: S3BlobStore) -> None:
    """Purging leftovers (ids from staging_ids, no DB row any more) must not leak multipart uploads."""
    write_in_chunks(store, "orphan", os.urandom(6 * MiB), chunk=3 * MiB)
    for upload_id in store.staging_ids():
        store.staging_delete(upload_id, {})
    assert mpus(store) == [] and staging_keys(store) == []


def test_sweep_of_stale_multipart_uploads(store: S3BlobStore) -> None:
    write_in_chunks(store, "stale", os.urandom(5 * MiB), chunk=5 * MiB)
    assert store.abort_stale_multipart_uploads(older_than_s=3600) == 0 and len(mpus(store)) == 1
    assert store.abort_stale_multipart_uploads(older_than_s=0) == 1
    assert mpus(store) == []


def test_commit_dedupes_and_is_idempotent(store: S3BlobStore) -> None:
    data = os.urandom(6 * MiB)
    first = write_in_chunks(store, "one", data, chunk=2 * MiB)
    second = write_in_chunks(store, "two", data, chunk=4 * MiB)
    key = commit(store, "one", first)
    store.staging_commit("two", key, second)                                  # same bytes: just cleans up
    store.staging_commit("two", key, second)                                  # again: nothing to do
    assert mpus(store) == [] and staging_keys(store) == []
    assert b"".join(store.open_range(key)) == data


def test_open_s3_store_fails_clearly_for_a_missing_bucket(services: dict[str, str], monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", services["OAIOFS_TEST_S3_ACCESS_KEY"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", services["OAIOFS_TEST_S3_SECRET_KEY"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(Unavailable, match="no-such-bucket"):
        open_s3_store("s3://no-such-bucket/x", endpoint=services["OAIOFS_TEST_S3_ENDPOINT"])
    with pytest.raises(InvalidValue):
        open_s3_store("s3:///nobucket")


def test_open_s3_store_takes_the_endpoint_from_the_boto3_environment(services: dict[str, str], s3_prefix: str,
                                                                       monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", services["OAIOFS_TEST_S3_ENDPOINT"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", services["OAIOFS_TEST_S3_ACCESS_KEY"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", services["OAIOFS_TEST_S3_SECRET_KEY"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = open_s3_store(f"s3://{services['OAIOFS_TEST_S3_BUCKET']}/{s3_prefix}")
    assert store.client.meta.endpoint_url == services["OAIOFS_TEST_S3_ENDPOINT"]
    key = commit(store, "env", write_in_chunks(store, "env", b"via env", chunk=100))
    assert b"".join(store.open_range(key)) == b"via env"


def test_put_small_stores_one_final_blob_and_dedupes(store: S3BlobStore) -> None:
    data = os.urandom(5000)
    key = blob_key(hashlib.sha256(data).hexdigest())
    store.put_small(key, data)
    assert b"".join(store.open_range(key)) == data
    modified = store.client.head_object(Bucket=store.bucket, Key=store.prefix + key)["LastModified"]
    store.put_small(key, data)                                       # stored already: not written again
    assert store.client.head_object(Bucket=store.bucket, Key=store.prefix + key)["LastModified"] == modified
    empty = blob_key(hashlib.sha256(b"").hexdigest())
    store.put_small(empty, b"")
    assert store.size(empty) == 0
    assert staging_keys(store) == [] and mpus(store) == []
