"""The S3 blob store (boto3): content-addressed blobs plus multipart staging for tus uploads.

Layout under ``s3://bucket/prefix``::

    <prefix>/sha256/ab/cd/<sha256>           final blobs (immutable, deduplicated)
    <prefix>/staging/<upload id>/data        the multipart upload target of an upload
    <prefix>/staging/<upload id>/tail-<gen>-<random>  bytes not yet in a part (< part_size)

No server process keeps an upload on local disk. S3 parts must be at least 5 MiB
(except the last), so written bytes collect in a small *tail* object until they
reach ``part_size``; then they become the next part of a multipart upload. The
staging ``state`` (kept by the caller in ``Upload.staging_json``) records the
multipart upload id, the part ETags and sizes, and the tail object, so any
process can continue an upload another one started::

    {"v": 1, "mpu": "<UploadId>" | None, "parts": [[number, etag, size], ...],
     "tail": <bytes in the tail object>, "tail_name": "tail-…" | None,
     "prev_name": <the tail before it> | None, "gen": <write counter>}

Crash safety: a write never changes anything the caller's (committed) state
refers to. Parts are numbered from the state, so a retried write replaces an
orphaned part; each write puts a new, uniquely named tail object and only drops
the one *before* the caller's (which no committed state refers to any more), so
a write whose state is never committed, or loses a race with another process,
cannot damage the upload. Committing completes the multipart upload to the
staging ``data`` key (the tail becomes the last part) and server-side copies it
to the content-addressed key; the database commit that follows is what makes
the version visible. :meth:`S3BlobStore.staging_delete` aborts the multipart
upload and deletes the staging objects; :meth:`S3BlobStore.abort_stale_multipart_uploads`
sweeps multipart uploads that nobody finished.

Endpoint and credentials come the way boto3 users expect (``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``
and the AWS config files); an explicit ``endpoint`` (``--s3-endpoint``) wins.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import re
import secrets
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import urlparse

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ...errors import Gone, InsufficientStorage, InvalidValue, NotFound, OffsetMismatch, TooLarge, Unavailable
from .keys import _KEY_RE, READ_CHUNK, check_key, check_upload_id

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB              # S3: every part but the last must be at least this big
MAX_PART_SIZE = 5 * 1024 * MiB       # S3: no part may be bigger
MAX_PARTS = 10_000                   # S3: parts per multipart upload
DEFAULT_PART_SIZE = 8 * MiB          # 10 000 parts x 8 MiB = 78 GiB per upload
_MISSING = {"404", "NoSuchKey", "NotFound"}
_NO_UPLOAD = {"NoSuchUpload", "404"}
_DAMAGED = {"InvalidPart", "InvalidPartOrder", "EntityTooSmall"}
_FULL = {"QuotaExceeded", "EntityTooLarge", "XMinioStorageFull", "StorageFull", "InsufficientStorage",
         "XMinioAdminBucketQuotaExceeded"}      # the store is full / over quota / refuses the size: 507
_TAIL_NAME_RE = re.compile(r"^tail-[0-9]{8}-[0-9a-f]{8}$")
F = TypeVar("F", bound=Callable[..., Any])


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def s3_errors(method: F) -> F:
    """Turn S3 failures that escape a store method into ``Unavailable`` (503: clients retry later),
    or ``InsufficientStorage`` (507) when the store says it is full or refuses the size."""
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except ClientError as exc:
            if _code(exc) in _FULL or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 507:
                raise InsufficientStorage(f"the blob storage refused the bytes ({_code(exc) or 507}); "
                                          "nothing was stored", {"s3_error": _code(exc)}) from exc
            raise Unavailable(f"blob storage error {_code(exc) or 'unknown'}", {"s3_error": _code(exc)}) from exc
        except BotoCoreError as exc:
            raise Unavailable(f"blob storage unreachable: {exc}") from exc
    return wrapper  # type: ignore[return-value]


@dataclasses.dataclass
class StagingState:
    """The staging state of one upload (see the module docstring)."""

    mpu: str | None = None
    parts: list[list[Any]] = dataclasses.field(default_factory=list)   # [number, etag, size]
    tail: int = 0
    tail_name: str | None = None
    prev_name: str | None = None
    gen: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> "StagingState":
        raw = raw or {}
        return cls(mpu=raw.get("mpu"), parts=[list(p) for p in raw.get("parts", [])],
                   tail=int(raw.get("tail", 0)), tail_name=raw.get("tail_name"),
                   prev_name=raw.get("prev_name"), gen=int(raw.get("gen", 0)))

    def to_dict(self) -> dict[str, Any]:
        return {"v": 1, "mpu": self.mpu, "parts": self.parts, "tail": self.tail, "tail_name": self.tail_name,
                "prev_name": self.prev_name, "gen": self.gen}

    @property
    def parts_size(self) -> int:
        return sum(int(p[2]) for p in self.parts)

    @property
    def size(self) -> int:
        return self.parts_size + self.tail


class S3BlobStore:
    """Blobs and upload staging in one S3 bucket under an optional prefix."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", *, part_size: int = DEFAULT_PART_SIZE) -> None:
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise InvalidValue(f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.part_size = part_size
        self._copy_config = TransferConfig(multipart_threshold=MAX_PART_SIZE, multipart_chunksize=512 * MiB,
                                           max_concurrency=4)

    def __repr__(self) -> str:
        return f"S3BlobStore('s3://{self.bucket}/{self.prefix}')"

    # --- keys ---
    def _blob(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _staging_prefix(self, upload_id: str) -> str:
        return f"{self.prefix}staging/{check_upload_id(upload_id)}/"

    def _data_key(self, upload_id: str) -> str:
        return self._staging_prefix(upload_id) + "data"

    def _tail_key(self, upload_id: str, name: str | None) -> str:
        if not name or not _TAIL_NAME_RE.match(name):
            raise NotFound("upload staging area is missing", {"upload_id": upload_id})
        return self._staging_prefix(upload_id) + name

    # --- final blobs ---
    def local_path(self, key: str) -> None:
        check_key(key)
        return None

    def _head(self, s3_key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=s3_key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise

    @s3_errors
    def exists(self, key: str) -> bool:
        return self._head(self._blob(key)) is not None

    @s3_errors
    def size(self, key: str) -> int:
        head = self._head(self._blob(key))
        if head is None:
            raise NotFound("blob is missing", {"key": key})
        return int(head["ContentLength"])

    @s3_errors
    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes ``[start, end)`` through one ranged GET (a missing blob raises at once)."""
        return self._get_range(self._blob(key), start, end, what={"key": key})

    @s3_errors
    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._blob(key))

    def _get_range(self, s3_key: str, start: int, end: int | None, what: dict[str, Any]) -> Iterator[bytes]:
        if start < 0 or (end is not None and end < start):
            raise InvalidValue("bad byte range", {"start": start, "end": end})
        if end is not None and end == start:
            if self._head(s3_key) is None:
                raise NotFound("blob is missing", what)
            return iter(())
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": s3_key}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            body = self.client.get_object(**kwargs)["Body"]
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise NotFound("blob is missing", what) from None
            if _code(exc) == "InvalidRange":          # start at or past the end (like a local file: nothing)
                return iter(())
            raise
        return _stream(body)

    # --- staging ---
    def staging_create(self, upload_id: str) -> dict[str, Any]:
        """Nothing is stored until the first write (then a tail object, later a multipart upload)."""
        check_upload_id(upload_id)
        return StagingState().to_dict()

    @s3_errors
    def staging_write(self, upload_id: str, offset: int, data: bytes, state: dict[str, Any]) -> dict[str, Any]:
        st = StagingState.from_dict(state)
        if offset > st.size or offset < 0:
            raise OffsetMismatch("write offset is not the staged size", {"offset": offset, "staged": st.size})
        if len(data) > MAX_PART_SIZE:
            raise TooLarge("a single staging write must be below 5 GiB", {"size": len(data)})
        keep = self._rewind(st, offset)
        if not data and keep == st.tail:
            return st.to_dict()
        buf = self._read_tail(upload_id, st, keep) + bytes(data) if keep else bytes(data)
        unreferenced = st.prev_name           # the tail before the caller's: no committed state uses it
        st.gen += 1
        st.prev_name, st.tail_name, st.tail = st.tail_name, None, 0
        if len(buf) >= self.part_size:
            self._upload_part(upload_id, st, buf)
        elif buf:
            st.tail_name = f"tail-{st.gen:08d}-{secrets.token_hex(4)}"
            self.client.put_object(Bucket=self.bucket, Key=self._tail_key(upload_id, st.tail_name), Body=buf)
            st.tail = len(buf)
        if unreferenced:
            self._delete_keys([self._tail_key(upload_id, unreferenced)])
        return st.to_dict()

    def _rewind(self, st: StagingState, offset: int) -> int:
        """Drop what is staged after ``offset``; returns how many tail bytes to keep."""
        if offset >= st.parts_size:
            return offset - st.parts_size
        done = 0
        for index, part in enumerate(st.parts):
            if done == offset:
                del st.parts[index:]
                st.tail = 0
                return 0
            done += int(part[2])
        raise OffsetMismatch("cannot rewind into the middle of an uploaded part",
                             {"offset": offset, "part_boundaries": self._boundaries(st)})

    @staticmethod
    def _boundaries(st: StagingState) -> list[int]:
        out, done = [0], 0
        for part in st.parts:
            done += int(part[2])
            out.append(done)
        return out

    def _read_tail(self, upload_id: str, st: StagingState, length: int) -> bytes:
        if length <= 0:
            return b""
        what = {"upload_id": upload_id}
        try:
            return b"".join(self._get_range(self._tail_key(upload_id, st.tail_name), 0, length, what))
        except NotFound:
            raise NotFound("upload staging area is missing", what) from None

    def _upload_part(self, upload_id: str, st: StagingState, data: bytes) -> None:
        if len(st.parts) >= MAX_PARTS:
            raise TooLarge("upload has too many parts", {"parts": len(st.parts)})
        if st.mpu is None:
            st.mpu = self.client.create_multipart_upload(Bucket=self.bucket, Key=self._data_key(upload_id))["UploadId"]
        number = len(st.parts) + 1
        try:
            etag = self.client.upload_part(Bucket=self.bucket, Key=self._data_key(upload_id), UploadId=st.mpu,
                                           PartNumber=number, Body=data)["ETag"]
        except ClientError as exc:
            if _code(exc) in _NO_UPLOAD:
                raise NotFound("upload staging area is gone (aborted or already assembled)",
                               {"upload_id": upload_id}) from None
            raise
        st.parts.append([number, etag, len(data)])
        log.debug("upload %s: part %d (%d bytes)", upload_id, number, len(data))

    def _assemble(self, upload_id: str, st: StagingState) -> str | None:
        """The S3 key holding all staged bytes (completing the multipart upload); None if empty."""
        what = {"upload_id": upload_id}
        if st.mpu is None or not st.parts:
            if not st.tail:
                return None
            key = self._tail_key(upload_id, st.tail_name)
            head = self._head(key)
            if head is None or int(head["ContentLength"]) != st.tail:
                raise NotFound("upload staging area is missing", what)
            return key
        data_key = self._data_key(upload_id)
        parts = [{"PartNumber": int(n), "ETag": etag} for n, etag, _size in st.parts]
        try:
            if st.tail:
                tail = self._read_tail(upload_id, st, st.tail)
                number = len(parts) + 1
                etag = self.client.upload_part(Bucket=self.bucket, Key=data_key, UploadId=st.mpu,
                                               PartNumber=number, Body=tail)["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=data_key, UploadId=st.mpu,
                                                  MultipartUpload={"Parts": parts})
        except ClientError as exc:
            if _code(exc) in _DAMAGED:            # e.g. a part replaced by a racing write with other chunking
                raise Gone("the upload's staged parts do not fit together; start the upload again",
                           dict(what, s3_error=_code(exc))) from exc
            if _code(exc) not in _NO_UPLOAD:
                raise
            # completed before (an earlier staging_read/commit): the data object must be whole
        head = self._head(data_key)
        if head is None or int(head["ContentLength"]) != st.size:
            raise NotFound("upload staging area is missing or incomplete", dict(what, staged=st.size))
        return data_key

    @s3_errors
    def staging_read(self, upload_id: str, state: dict[str, Any]) -> Iterator[bytes]:
        """All staged bytes; completes the multipart upload (call it only when the upload is complete)."""
        st = StagingState.from_dict(state)
        source = self._assemble(upload_id, st)
        if source is None:
            return iter(())
        return self._get_range(source, 0, None, {"upload_id": upload_id})

    @s3_errors
    def staging_commit(self, upload_id: str, key: str, state: dict[str, Any]) -> None:
        final = self._blob(key)
        if self._head(final) is not None:           # same bytes already stored (or committed before)
            self.staging_delete(upload_id, state)
            return
        st = StagingState.from_dict(state)
        source = self._assemble(upload_id, st)
        if source is None:
            self.client.put_object(Bucket=self.bucket, Key=final, Body=b"")
        else:
            self.client.copy({"Bucket": self.bucket, "Key": source}, self.bucket, final, Config=self._copy_config)
        log.debug("committed upload %s -> %s (%d bytes)", upload_id, key, st.size)
        self.staging_delete(upload_id, state)

    @s3_errors
    def put_small(self, key: str, data: bytes) -> None:
        """Store ``data`` as blob ``key`` with one PUT (atomic, durable when answered) unless it is there
        (a batch commit's files, at most ``protocol.BATCH_MAX_BYTES``; see blob_batch.py)."""
        final = self._blob(key)
        if self._head(final) is None:
            self.client.put_object(Bucket=self.bucket, Key=final, Body=bytes(data))

    @s3_errors
    def staging_delete(self, upload_id: str, state: dict[str, Any]) -> None:
        """Abort the multipart upload(s) and delete every staging object of ``upload_id``."""
        prefix = self._staging_prefix(upload_id)
        mpu = StagingState.from_dict(state).mpu
        targets = {(self._data_key(upload_id), mpu)} if mpu else set()
        targets |= {(u["Key"], u["UploadId"]) for u in self._multipart_uploads(prefix)}
        for s3_key, upload in targets:
            self._abort(s3_key, upload)
        self._delete_keys(self._list_keys(prefix))

    @s3_errors
    def staging_ids(self) -> list[str]:
        """Upload ids with staging objects or an open multipart upload."""
        root = f"{self.prefix}staging/"
        # keys, not Delimiter listings: some servers (SeaweedFS) list emptied "folders" as prefixes
        ids = {key[len(root):].split("/", 1)[0] for key in self._list_keys(root)}
        ids.update(u["Key"][len(root):].split("/", 1)[0] for u in self._multipart_uploads(root))
        return sorted(i for i in ids if i)

    def check_space(self, nbytes: int) -> None:
        """S3 has no free-space figure; a full bucket surfaces as the server's error."""

    @s3_errors
    def list_blobs(self) -> Iterator[tuple[str, float, int]]:
        """Every final blob under the prefix as (key, last-modified epoch seconds, size)."""
        root = f"{self.prefix}sha256/"
        out: list[tuple[str, float, int]] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=root):
            for obj in page.get("Contents", []):
                key = obj["Key"][len(self.prefix):]
                if _KEY_RE.match(key):
                    out.append((key, obj["LastModified"].timestamp(), int(obj.get("Size", 0))))
        return iter(out)

    @s3_errors
    def abort_stale_multipart_uploads(self, older_than_s: float) -> int:
        """Abort multipart uploads under the prefix started more than ``older_than_s`` ago; returns how many."""
        cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=older_than_s)
        count = 0
        for upload in self._multipart_uploads(self.prefix):
            if upload["Initiated"] < cutoff:
                self._abort(upload["Key"], upload["UploadId"])
                count += 1
        if count:
            log.info("aborted %d stale multipart uploads under %s", count, self)
        return count

    # --- helpers ---
    def _multipart_uploads(self, prefix: str) -> list[dict[str, Any]]:
        uploads: list[dict[str, Any]] = []
        for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
            uploads.extend(page.get("Uploads", []))
        return uploads

    def _abort(self, s3_key: str, mpu: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=s3_key, UploadId=mpu)
        except ClientError as exc:
            if _code(exc) not in _NO_UPLOAD:
                raise

    def _list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start:start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})


def _stream(body: Any) -> Iterator[bytes]:
    """Yield a streaming GET body in ``READ_CHUNK`` pieces, then close it."""
    try:
        yield from body.iter_chunks(READ_CHUNK)
    finally:
        body.close()


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise InvalidValue("blob store URL must look like s3://bucket/prefix", {"url": url})
    return parsed.netloc, parsed.path.strip("/")


def make_client(endpoint: str | None = None) -> Any:
    """A thread-safe boto3 S3 client; ``endpoint`` overrides the boto3 configuration's endpoint."""
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=32,
                    s3={"addressing_style": "path"} if endpoint else None)
    return boto3.session.Session().client("s3", endpoint_url=endpoint or None, config=config)


def open_s3_store(url: str, endpoint: str | None = None, *, part_size: int = DEFAULT_PART_SIZE) -> S3BlobStore:
    """The store for ``s3://bucket/prefix``; checks that the bucket answers (clear error at start-up)."""
    bucket, prefix = parse_s3_url(url)
    client = make_client(endpoint)
    try:
        client.head_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError) as exc:
        raise Unavailable(f"S3 bucket {bucket!r} is not usable at {client.meta.endpoint_url}: {exc}",
                          {"bucket": bucket, "endpoint": client.meta.endpoint_url}) from exc
    store = S3BlobStore(client, bucket, prefix, part_size=part_size)
    log.info("blobs in %r (endpoint %s)", store, client.meta.endpoint_url)
    return store
