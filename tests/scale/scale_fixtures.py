"""Fixtures of the scale-out tests: PostgreSQL + S3 services, fresh databases and S3 prefixes.

The services come from ``scripts/services.sh`` (its ``OAIOFS_TEST_*`` variables in the
environment). Without them this module starts a private pair for the session and
stops it afterwards; if that fails the tests fail loudly. Only ``OAIOFS_SKIP_SCALE=1``
skips them (a quick local run), never silently.

Imported by the test modules (``from tests.scale.scale_fixtures import ...``) rather
than being a conftest, so no second module named ``conftest`` appears.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.conftest import ServerProcess, create_test_database, s3_env

REPO = Path(__file__).resolve().parents[2]
SERVICES_SCRIPT = REPO / "scripts" / "services.sh"
SERVICE_VARS = ("OAIOFS_TEST_PG_URL", "OAIOFS_TEST_S3_ENDPOINT", "OAIOFS_TEST_S3_BUCKET",
                "OAIOFS_TEST_S3_ACCESS_KEY", "OAIOFS_TEST_S3_SECRET_KEY")
SKIP_ENV = "OAIOFS_SKIP_SCALE"
MiB = 1024 * 1024


def _parse_exports(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export "):].partition("=")
            out[name.strip()] = value.strip()
    return out


@pytest.fixture(scope="session")
def services() -> Iterator[dict[str, str]]:
    """The ``OAIOFS_TEST_*`` values of a running PostgreSQL + SeaweedFS S3 pair."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: PostgreSQL + S3 tests skipped on request")
    if all(os.environ.get(v) for v in SERVICE_VARS):
        yield {v: os.environ[v] for v in SERVICE_VARS}
        return
    # not under pytest's tmp folder: its parents are private to root, and PostgreSQL runs as "postgres"
    state_dir = Path(tempfile.mkdtemp(prefix="oaiofs-services-"))
    state_dir.chmod(0o755)
    env = dict(os.environ, OAIOFS_SERVICES_DIR=str(state_dir))
    started = subprocess.run([str(SERVICES_SCRIPT), "start"], env=env, capture_output=True, text=True)
    found = _parse_exports(started.stdout)
    if started.returncode != 0 or not all(found.get(v) for v in SERVICE_VARS):
        pytest.fail(f"cannot start PostgreSQL + S3 with {SERVICES_SCRIPT} start (set {SKIP_ENV}=1 to skip "
                    f"these tests): rc={started.returncode}\n{started.stderr[-3000:]}", pytrace=False)
    try:
        yield found
    finally:
        subprocess.run([str(SERVICES_SCRIPT), "stop"], env=env, capture_output=True, text=True)


@pytest.fixture
def pg_database(services: dict[str, str]) -> Iterator[str]:
    """A fresh, empty PostgreSQL database (dropped afterwards); yields its URL."""
    import psycopg

    name = "scale_" + uuid.uuid4().hex[:16]
    url = create_test_database(name, services["OAIOFS_TEST_PG_URL"])
    yield url
    with psycopg.connect(services["OAIOFS_TEST_PG_URL"], autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def s3_client(services: dict[str, str]) -> Any:
    """A boto3 client for the test S3 server (explicit endpoint and keys)."""
    import boto3

    return boto3.session.Session().client(
        "s3", endpoint_url=services["OAIOFS_TEST_S3_ENDPOINT"], region_name="us-east-1",
        aws_access_key_id=services["OAIOFS_TEST_S3_ACCESS_KEY"],
        aws_secret_access_key=services["OAIOFS_TEST_S3_SECRET_KEY"])


def list_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    """Every object key under ``prefix``."""
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def open_multipart_uploads(client: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Multipart uploads in progress under ``prefix``."""
    return client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])


@pytest.fixture
def s3_prefix(services: dict[str, str]) -> Iterator[str]:
    """A fresh key prefix in the test bucket (emptied afterwards)."""
    prefix = "scale-" + uuid.uuid4().hex[:12]
    yield prefix
    client, bucket = s3_client(services), services["OAIOFS_TEST_S3_BUCKET"]
    for upload in open_multipart_uploads(client, bucket, prefix + "/"):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    keys = list_keys(client, bucket, prefix + "/")
    for start in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]})


@pytest.fixture
def shared_backend(services: dict[str, str], pg_database: str, s3_prefix: str) -> dict[str, str]:
    """Server environment for several processes on ONE database and ONE bucket prefix.

    The endpoint is passed as ``OAIOFS_S3_ENDPOINT`` (what ``--s3-endpoint`` sets), the keys
    as boto3's standard ``AWS_*`` variables.
    """
    env = s3_env(services)
    del env["AWS_ENDPOINT_URL_S3"]
    return {**env, "OAIOFS_DB_URL": pg_database,
            "OAIOFS_BLOBS_URL": f"s3://{services['OAIOFS_TEST_S3_BUCKET']}/{s3_prefix}",
            "OAIOFS_S3_ENDPOINT": services["OAIOFS_TEST_S3_ENDPOINT"]}


@pytest.fixture
def two_servers(server_factory: Callable[..., ServerProcess], shared_backend: dict[str, str],
                tmp_path: Path) -> tuple[ServerProcess, ServerProcess]:
    """Two ``oaiofs serve`` processes (own data folders and ports) sharing PostgreSQL + S3."""
    first = server_factory(tmp_path / "node-a", env=shared_backend)
    second = server_factory(tmp_path / "node-b", env=shared_backend)
    return first, second
