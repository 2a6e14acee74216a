"""Bad input gets a precise JSON error and changes nothing; OpenAPI is served."""
from __future__ import annotations

import base64
import http.client
import json
from urllib.parse import quote, urlsplit

import pytest
import requests

from tests.conftest import PASSWORD
from oaiofs import protocol
from oaiofs.client.api import quote_id
from oaiofs.errors import InvalidValue

from tests.server.server_helpers import client, unique_id

pytestmark = pytest.mark.backend_neutral     # docs/testing.md: not rerun on PostgreSQL + S3


def raw_request(server, method: str, target: str, username: str, body: bytes | None = None,
                content_type: str = "application/json") -> tuple[int, dict]:
    """Send ``target`` byte-exact (no client-side '..' resolution) and parse the JSON answer."""
    host = urlsplit(server.url)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
    auth = base64.b64encode(f"{username}:{PASSWORD}".encode()).decode()
    headers = {"Authorization": f"Basic {auth}", "Content-Type": content_type}
    conn.request(method, target, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data) if data else {}


@pytest.fixture
def owned(live_server, make_user):
    alice = make_user("alice")
    api = client(live_server, alice)
    oaio_id = api.create_object({"keep": "me"}, unique_id())["oaio_id"]
    api.make_dir(oaio_id, "docs")
    return alice, api, oaio_id, api.get_object(oaio_id)


def _error_shape(body: dict, code: str) -> None:
    assert body["error"] == code and isinstance(body["message"], str) and body["message"]
    assert isinstance(body["detail"], dict)


def test_malformed_json_is_400_and_wrong_types_are_422(live_server, owned):
    alice, api, oaio_id, before = owned
    target = protocol.PATH_OBJECT.format(oaio_id=quote_id(oaio_id))
    for body in (b'{"values": {', b"not json", b'{"values": {"a": 1}}}', b"\xff\xfe"):
        status, answer = raw_request(live_server, "PATCH", target, alice, body)
        assert status == 400, body
        _error_shape(answer, "malformed_json")
    for body in ({"values": []}, {"values": "x"}, {"values": {"a": 1}, "mode": "upsert"},
                 {"values": {}, "base_version": "1"}, {"values": {}, "base_version": -1},
                 {"values": {}, "base_version": True}, {"values": {"_name": 5}},
                 {"values": {"_file_paths": "a"}}, {"values": {}, "surprise": 1}, {}):
        status, answer = raw_request(live_server, "PATCH", target, alice, json.dumps(body).encode())
        assert status == 422, body
        _error_shape(answer, "invalid_value")
    for body in ({"values": {}, "oaio_id": 5}, {"values": {}, "stamp": "yesterday"},
                 {"values": {}, "stamp": "19991231235959000000"}, {"values": 1}):
        status, answer = raw_request(live_server, "POST", protocol.PATH_OBJECTS, alice, json.dumps(body).encode())
        assert status == 422, body
    assert api.get_object(oaio_id) == before


def test_hostile_object_ids_are_refused(live_server, owned):
    alice, api, _oaio_id, _before = owned
    objects_before = api.list_objects()[0]
    for bad in ("a/b", "..", ".", "nul\x00byte", "tab\tid", "back\\slash", "x" * 256, ""):
        status, answer = raw_request(live_server, "POST", protocol.PATH_OBJECTS, alice,
                                     json.dumps({"values": {}, "oaio_id": bad}).encode())
        assert status == 422, bad
        _error_shape(answer, "invalid_value")
    assert api.list_objects()[0] == objects_before
    for target in ("/api/v1/objects/%2E%2E", "/api/v1/objects/%00x", "/api/v1/objects/" + "y" * 256):
        status, answer = raw_request(live_server, "GET", target, alice)
        assert status == 422, target
    with pytest.raises(InvalidValue):       # the client refuses before sending
        api.get_object("../etc")


def test_hostile_file_paths_are_refused_and_change_nothing(live_server, owned):
    alice, api, oaio_id, before = owned
    prefix = protocol.PATH_OBJECT.format(oaio_id=quote_id(oaio_id))
    hostile = ["..", "docs/..", "docs/../../x", ".", "a//b", "%00", "nul%00byte", "a%5Cb",
               quote("x" * 256), protocol.VALUES_FILE]
    for path in hostile:
        for method, target in (("POST", f"{prefix}/dirs/{path}"), ("DELETE", f"{prefix}/files/{path}")):
            status, answer = raw_request(live_server, method, target, alice)
            assert status in (404, 422), (method, path, status)
            if status == 422:
                _error_shape(answer, "invalid_value")
    for src, dst in (("docs", "../x"), ("docs", "/abs"), ("docs", "a\x00b"), ("../docs", "x"),
                     ("docs", protocol.VALUES_FILE), ("docs", "y" * 256)):
        status, answer = raw_request(live_server, "POST", f"{prefix}/move", alice,
                                     json.dumps({"src": src, "dst": dst}).encode())
        assert status == 422, (src, dst)
    assert api.get_object(oaio_id) == before
    # 'values.json' is reserved only at the top of an object
    assert "docs/values.json" in [f["path"] for f in api.make_dir(oaio_id, "docs/values.json")["files"]]


def test_unknown_routes_and_methods_answer_json(live_server, make_user):
    alice = make_user("alice")
    resp = requests.get(live_server.url + "/api/v1/nothing-here", auth=(alice, PASSWORD), timeout=10)
    assert resp.status_code == 404
    _error_shape(resp.json(), "not_found")
    resp = requests.put(live_server.url + protocol.PATH_OBJECTS, auth=(alice, PASSWORD), timeout=10)
    assert resp.status_code == 405
    _error_shape(resp.json(), "method_not_allowed")


def test_oversized_json_body_is_413(live_server, owned):
    alice, api, oaio_id, before = owned
    body = json.dumps({"values": {"big": "x" * (2 * protocol.MAX_VALUES_BYTES)}}).encode()
    target = protocol.PATH_OBJECT.format(oaio_id=quote_id(oaio_id))
    status, answer = raw_request(live_server, "PATCH", target, alice, body)
    assert status == 413
    _error_shape(answer, "too_large")

    def chunks():                       # no Content-Length: counted while reading
        for _ in range(3):
            yield b" " * protocol.MAX_VALUES_BYTES
        yield b'{"values": {}}'
    resp = requests.patch(live_server.url + target, data=chunks(), auth=(alice, PASSWORD), timeout=30,
                          headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert api.get_object(oaio_id) == before


def test_openapi_is_served(live_server):
    resp = requests.get(live_server.url + "/openapi.json", timeout=10)
    assert resp.status_code == 200
    paths = resp.json()["paths"]
    for path in (protocol.PATH_LOGIN, protocol.PATH_OBJECTS, protocol.PATH_OBJECT, protocol.PATH_MOVE,
                 protocol.PATH_SUBSCRIPTION, protocol.PATH_CHANGES):
        assert path in paths, path
