"""``/api/v1/changes?format=pacifica`` consumed by the real ``pacifica.downloader.Downloader.cloudevent()``."""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

import requests

from oaiofs import protocol
from oaiofs.errors import NotFound
from tests.conftest import PASSWORD
from pacifica.downloader import Downloader


def _feed(server, user: str, cursor: int = 0) -> tuple[list[dict], int]:
    res = requests.get(server.url + protocol.API_PREFIX + "/changes",
                       params={"cursor": cursor, "format": "pacifica", "limit": 1000},
                       auth=(user, PASSWORD), timeout=30)
    res.raise_for_status()
    body = res.json()
    return body["events"], body["cursor"]


def test_pacifica_downloader_consumes_the_change_feed(live_server, make_user, api_for, tmp_path: Path):
    owner, reader, stranger = make_user("pac-owner"), make_user("pac-reader"), make_user("pac-stranger")
    api = api_for(owner)
    rnd = random.Random(2026)
    oaio_id = api.create_object({"_name": "pacifica"}, f"pac-{rnd.getrandbits(48):x}")["oaio_id"]
    api.set_subscription(oaio_id, reader, "r")
    _, start = _feed(live_server, reader)
    model: dict[str, bytes] = {}
    names = ["a.bin", "sub/b.txt", "sub/deep/c.dat", "ü n i.txt", "d/e.bin"]
    for step in range(8):                         # a seeded sequence of writes, overwrites, deletes, folders, moves
        op = rnd.choice(["put", "put", "put", "delete", "mkdir", "move"])
        if op == "put" or not model:
            path = rnd.choice(names)
            if any(p.startswith(path + "/") for p in model) or any(path.startswith(p + "/") for p in model):
                continue
            model[path] = rnd.randbytes(rnd.randint(0, 70_000))
            api.put_file(oaio_id, path, model[path])
        elif op == "delete":
            path = rnd.choice(sorted(model))
            api.delete_file(oaio_id, path)
            del model[path]
        elif op == "mkdir":
            try:
                api.make_dir(oaio_id, f"empty{step}")
            except NotFound:
                pass
        else:
            src = rnd.choice(sorted(model))
            dst = f"moved/{step}-{src.rsplit('/', 1)[-1]}"
            api.move(oaio_id, src, dst)
            model[dst] = model.pop(src)

    events, _ = _feed(live_server, reader, start)
    assert events and all(isinstance(e["data"], list) for e in events)
    downloaded: dict[str, bytes] = {}
    for i, event in enumerate(events):
        for record in event["data"]:
            assert record["destinationTable"] == "Files" and record["hashtype"] == "sha256"
            assert record["_id"] == protocol.cart_file_id(oaio_id, f"{record['subdir']}/{record['name']}".lstrip("/"))
            assert not record["name"].startswith("empty")                  # folders are not file records
        if not event["data"]:
            continue
        location = tmp_path / f"event{i}"
        downloader = Downloader(cart_api_url=live_server.url + protocol.PATH_CARTS, auth={"auth": (reader, PASSWORD)})
        downloader.cloudevent(str(location), event, filename="data", timeout=60)
        for record in event["data"]:
            rel = f"{record['subdir']}/{record['name']}".lstrip("/")
            data = (location / "data" / rel).read_bytes()
            assert hashlib.sha256(data).hexdigest() == record["hashsum"]
            downloaded[rel] = data
    for path, data in model.items():                # every file that exists now arrived byte-identical
        assert downloaded[path] == data

    stranger_events, _ = _feed(live_server, stranger)
    assert stranger_events == []                    # no rights: nothing
    api.set_subscription(oaio_id, reader, "x")      # a reader who lost the right gets no file records any more
    again, _ = _feed(live_server, reader, start)
    assert again and all(e["data"] == [] for e in again)


def test_format_parameter_is_checked(live_server, make_user):
    user = make_user("pac")
    res = requests.get(live_server.url + protocol.API_PREFIX + "/changes", params={"format": "xml"},
                       auth=(user, PASSWORD), timeout=30)
    assert res.status_code == 422 and res.json()["error"] == "invalid_value"
