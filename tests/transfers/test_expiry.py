"""Expired partial uploads are purged (periodically and at start-up); live ones are kept."""
from __future__ import annotations

import datetime as dt

from tests.conftest import wait_until
from sqlalchemy import create_engine, update

from oaiofs.server.db import normalize_url
from oaiofs.server.models import Upload

from .helpers import TUS, basic_session, new_id, tus_create, tus_patch


def _staging(server, upload_url: str):
    """The local staging file of an upload (None when the server stores blobs elsewhere)."""
    root = server.data_dir / "blobs" / "staging"
    return root / upload_url.rsplit("/", 1)[1] if root.is_dir() else None


def test_expired_upload_is_purged_periodically(server_factory):
    server = server_factory(env={"OAIOFS_UPLOAD_EXPIRY_S": "2", "OAIOFS_PURGE_INTERVAL_S": "0.3"})
    user = server.add_user("expiring")
    session = basic_session(user)
    url = server.url + tus_create(session, server.url, new_id(), "f", 100).headers["Location"]
    assert tus_patch(session, url, 0, b"x" * 40).headers["Upload-Offset"] == "40"
    staged = _staging(server, url)
    assert staged is None or staged.exists()
    if staged is not None:              # no request touches the upload: only the purge can remove it
        wait_until(lambda: not staged.exists(), timeout=30, message="the purge of the staged bytes")
    wait_until(lambda: session.head(url, headers=TUS).status_code == 404, timeout=30,
               message="the expired upload to be purged")


def test_startup_purges_only_expired_uploads(server_factory):
    server = server_factory(env={"OAIOFS_PURGE_INTERVAL_S": "3600"})
    user = server.add_user("restart-purge")
    session = basic_session(user)
    expired = server.url + tus_create(session, server.url, new_id(), "old", 100).headers["Location"]
    live = server.url + tus_create(session, server.url, new_id(), "new", 100).headers["Location"]
    tus_patch(session, expired, 0, b"o" * 10)
    tus_patch(session, live, 0, b"n" * 20)
    server.stop()
    db_url = server.env.get("OAIOFS_DB_URL") or f"sqlite:///{server.data_dir / 'oaiofs.db'}"
    engine = create_engine(normalize_url(db_url))
    with engine.begin() as conn:       # let the first upload's expiry pass while the server is down
        conn.execute(update(Upload).where(Upload.id == expired.rsplit("/", 1)[1])
                     .values(expires=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)))
    engine.dispose()
    server.start()
    wait_until(lambda: session.head(expired, headers=TUS).status_code == 404, message="start-up purge")
    assert session.head(live, headers=TUS).headers["Upload-Offset"] == "20"
    staged = _staging(server, expired)
    assert staged is None or not staged.exists()
    assert _staging(server, live) is None or _staging(server, live).stat().st_size == 20
    done = tus_patch(session, live, 20, b"n" * 80)
    assert done.status_code == 204 and done.headers["X-OAIO-Version"]
