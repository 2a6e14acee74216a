"""Unit tests of the compat layer's pure parts: header decoding, path checks, stamps, staged-file purge."""
from __future__ import annotations

import datetime as dt
import random

import pytest

from oaiofs.errors import InvalidInput, InvalidValue
from oaiofs.server import db as dbmod
from oaiofs.server.compat_ae import headers, service, storage
from oaiofs.server.models import User
from oaiofs.server.models_compat import CompatAeStagedFile
from oaiofs.server.settings import ServerSettings


def _random_text(rnd: random.Random) -> str:
    alphabet = "abcXYZ09 _-.'\"\\üß€日本\u2603\U0001f600\x00\x7f\n"
    return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40)))


def test_context_headers_round_trip_the_seed_encoding():
    pytest.importorskip("ae.oaio_model")
    from ae.oaio_model import context_encode
    rnd = random.Random(15)
    for _ in range(2000):
        user, device, app = _random_text(rnd), _random_text(rnd), _random_text(rnd)
        encoded = context_encode(user, device, app)          # what the unmodified client sends
        assert headers.context(encoded) == {"user": user[:255], "device": device[:255], "app": app[:255]}


def test_random_bytes_are_decoded_or_refused_never_evaluated():
    rnd = random.Random(16)
    for _ in range(3000):
        raw = rnd.randbytes(rnd.randint(0, 30))
        try:
            expected = raw.decode("utf-8")
        except UnicodeDecodeError:
            with pytest.raises(InvalidInput):
                headers.decode_bytes_literal(repr(raw))
        else:
            assert headers.decode_bytes_literal(repr(raw)) == expected
    for _ in range(3000):                                     # arbitrary header text: only ever InvalidInput
        text = "".join(rnd.choice("b'\"\\x0()+[]{}_ .:;fFrRuU123") for _ in range(rnd.randint(0, 20)))
        try:
            assert isinstance(headers.decode_bytes_literal(text), str)
        except InvalidInput:
            pass


@pytest.mark.parametrize("value,ok", [
    ({"_root_path": "{usr}/photos"}, True), ({"_root_path": "photos/2024"}, True), ({"_file_paths": ["a/b.txt"]}, True),
    ({"_root_path": "/abs"}, False), ({"_root_path": "{usr}/.."}, False), ({"_root_path": "D:\\x"}, False),
    ({"_root_path": "\\\\server\\share"}, False), ({"_root_path": "~root"}, False),
    ({"_file_paths": [""]}, False), ({"_file_paths": ["a\\..\\..\\b"]}, False), ({"_file_paths": ["./a"]}, False),
])
def test_escaping_values(value, ok):
    if ok:
        assert service.check_values(value) == value
    else:
        with pytest.raises(InvalidValue):
            service.check_values(value)


def test_reported_stamp_follows_native_changes():
    assert service.reported_stamp(3, "20260101000000000003", "20250101000000000001", 3) == "20250101000000000001"
    assert service.reported_stamp(4, "20260101000000000004", "20250101000000000001", 3) == "20260101000000000004"
    assert service.reported_stamp(1, "20260101000000000001", None, None) == "20260101000000000001"


def test_purge_drops_only_old_staged_files(tmp_path):
    settings = ServerSettings(data_dir=tmp_path / "data", db_url=f"sqlite:///{tmp_path / 'app.db'}")
    dbmod.run_migrations(settings.database_url)
    engine = dbmod.make_engine(settings.database_url)
    maker = dbmod.make_sessionmaker(engine)
    now = dt.datetime.now(dt.timezone.utc)
    with maker.begin() as db:
        user = User(username="u", password_hash="x")
        db.add(user)
        db.flush()
        for age_s, path in ((10, "new.txt"), (settings.upload_expiry_s + 60, "old.txt")):
            db.add(CompatAeStagedFile(user_id=user.id, oaio_id="o", stamp="20260101000000000000", path=path,
                                      blob_key="sha256/00/00/" + "0" * 64, size=0, sha256="0" * 64,
                                      created=now - dt.timedelta(seconds=age_s)))

    class State:
        pass
    state = State()
    state.settings, state.sessionmaker = settings, maker
    assert storage.purge_expired(state) == 1
    with maker() as db:
        assert [row.path for row in db.query(CompatAeStagedFile)] == ["new.txt"]
    engine.dispose()
