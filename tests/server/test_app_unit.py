"""In-process checks of the app wiring that a healthy server cannot show: 500s and failed commits."""
from __future__ import annotations

import logging

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from oaiofs.server import db as dbmod, security
from oaiofs.server.app import create_app
from oaiofs.server.deps import get_db
from oaiofs.server.models import User
from oaiofs.server.settings import ServerSettings

pytestmark = pytest.mark.backend_neutral     # docs/testing.md: not rerun on PostgreSQL + S3


@pytest.fixture
def app(tmp_path):
    settings = ServerSettings(data_dir=tmp_path / "data", db_url=f"sqlite:///{tmp_path / 'app.db'}")
    dbmod.run_migrations(settings.database_url)
    application = create_app(settings)

    @application.get("/test/boom")
    def boom() -> dict:
        raise RuntimeError("a bug")

    @application.post("/test/duplicate-user")
    def duplicate(db: Session = Depends(get_db)) -> dict:
        db.add(User(username="taken", password_hash=security.hash_password("pw")))
        return {"ok": True}                   # the unique violation only shows at commit

    with application.state.oaiofs.sessionmaker.begin() as db:
        db.add(User(username="taken", password_hash=security.hash_password("pw")))
    return application


def test_unexpected_errors_are_json_500_with_a_logged_traceback(app, caplog):
    with TestClient(app, raise_server_exceptions=False) as http, caplog.at_level(logging.ERROR):
        resp = http.get("/test/boom")
    assert resp.status_code == 500
    assert resp.json() == {"error": "internal", "message": "internal server error", "detail": {}}
    assert "a bug" not in resp.text
    assert any(rec.exc_info and "a bug" in str(rec.exc_info[1]) for rec in caplog.records)


def test_a_failed_commit_never_answers_success(app):
    with TestClient(app, raise_server_exceptions=False) as http:
        resp = http.post("/test/duplicate-user")
    assert resp.status_code == 500 and resp.json()["error"] == "internal"
    with app.state.oaiofs.sessionmaker() as db:
        assert db.scalar(select(func.count()).select_from(User).where(User.username == "taken")) == 1
