"""tus 1.0 at /api/v1/uploads/ against the real server: core, extensions, errors, rights."""
from __future__ import annotations

import base64
import hashlib

from oaiofs import protocol

from .helpers import TUS, basic_session, new_id, sha256, tus_create, tus_patch


def _checksum(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def test_options_advertises_extensions_and_max_size(live_server):
    resp = basic_session("nobody").options(live_server.url + protocol.PATH_UPLOADS)
    assert resp.status_code == 204
    assert resp.headers["Tus-Version"] == "1.0.0"
    assert set(resp.headers["Tus-Extension"].split(",")) == set(protocol.TUS_EXTENSIONS)
    assert set(resp.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "sha256"}
    assert int(resp.headers["Tus-Max-Size"]) > 0


def test_upload_in_chunks_with_resend_and_overlap_commits_once(live_server, make_user, api_for):
    user = make_user("tus")
    session, base = basic_session(user), live_server.url
    data = bytes(range(256)) * 4000                      # 1 024 000 bytes
    oaio_id = new_id()
    created = tus_create(session, base, oaio_id, "dir/file.bin", len(data), sha256=sha256(data))
    assert created.status_code == 201, created.text
    url = base + created.headers["Location"]
    assert created.headers["Upload-Expires"]

    assert tus_patch(session, url, 0, data[:300_000]).headers["Upload-Offset"] == "300000"
    # a re-sent chunk that is already fully received: 204 with the current offset, nothing appended
    again = tus_patch(session, url, 0, data[:300_000])
    assert (again.status_code, again.headers["Upload-Offset"]) == (204, "300000")
    # partial overlap: only the new tail is appended
    overlap = tus_patch(session, url, 200_000, data[200_000:600_000], _checksum("sha1", data[200_000:600_000]))
    assert (overlap.status_code, overlap.headers["Upload-Offset"]) == (204, "600000")
    head = session.head(url, headers=TUS)
    assert (head.headers["Upload-Offset"], head.headers["Upload-Length"]) == ("600000", str(len(data)))
    assert protocol.HEADER_UPLOAD_RESULT_VERSION not in head.headers

    last = tus_patch(session, url, 600_000, data[600_000:], _checksum("sha256", data[600_000:]))
    assert last.status_code == 204
    assert last.headers[protocol.HEADER_UPLOAD_RESULT_SHA256] == sha256(data)
    version = int(last.headers[protocol.HEADER_UPLOAD_RESULT_VERSION])
    # HEAD of the completed upload tells a client whose final answer was lost
    done = session.head(url, headers=TUS)
    assert done.headers[protocol.HEADER_UPLOAD_RESULT_VERSION] == str(version)
    # the last chunk sent twice does not commit twice
    assert tus_patch(session, url, 600_000, data[600_000:]).headers[protocol.HEADER_UPLOAD_RESULT_VERSION] == str(version)

    api = api_for(user)
    assert api.get_file(oaio_id, "dir/file.bin") == data
    doc = api.get_object(oaio_id)
    assert doc["owner"] == user and doc["access_right"] == "C"
    entry = next(f for f in doc["files"] if f["path"] == "dir/file.bin")
    assert (entry["version"], entry["sha256"], entry["size"]) == (version, sha256(data), len(data))
    assert doc["version"] == version


def test_wrong_chunk_checksum_gets_460_and_upload_continues(live_server, make_user, api_for):
    user = make_user("tus")
    session, base = basic_session(user), live_server.url
    data = b"abc" * 100_000
    oaio_id = new_id()
    url = base + tus_create(session, base, oaio_id, "f.txt", len(data)).headers["Location"]
    bad = tus_patch(session, url, 0, data[:100_000], _checksum("sha256", b"something else"))
    assert bad.status_code == 460
    assert bad.json()["error"] == "checksum_mismatch"
    assert session.head(url, headers=TUS).headers["Upload-Offset"] == "0"
    unknown = tus_patch(session, url, 0, data, "md5 " + base64.b64encode(hashlib.md5(data).digest()).decode())
    assert unknown.status_code == 400
    ok = tus_patch(session, url, 0, data, _checksum("sha1", data))
    assert ok.status_code == 204 and ok.headers[protocol.HEADER_UPLOAD_RESULT_SHA256] == sha256(data)
    assert api_for(user).get_file(oaio_id, "f.txt") == data


def test_wrong_whole_file_sha256_commits_nothing(live_server, make_user, api_for):
    user = make_user("tus")
    api = api_for(user)
    oaio_id = new_id()
    api.create_object({"k": 1}, oaio_id)
    api.put_file(oaio_id, "f.txt", b"version one")
    before = api.get_object(oaio_id)
    session, base = basic_session(user), live_server.url
    data = b"version two"
    url = base + tus_create(session, base, oaio_id, "f.txt", len(data), sha256=sha256(b"other")).headers["Location"]
    resp = tus_patch(session, url, 0, data)
    assert resp.status_code == 460
    assert resp.json()["detail"]["actual"] == sha256(data)
    assert api.get_file(oaio_id, "f.txt") == b"version one"
    assert api.get_object(oaio_id)["version"] == before["version"]
    assert session.head(url, headers=TUS).status_code == 404


def test_stale_base_version_refused_at_creation_and_at_commit(live_server, make_user, api_for):
    user = make_user("tus")
    api = api_for(user)
    oaio_id = new_id()
    api.create_object({}, oaio_id)
    first = api.put_file(oaio_id, "doc.txt", b"v1")
    session, base = basic_session(user), live_server.url
    stale = tus_create(session, base, oaio_id, "doc.txt", 2, base_version=str(first["version"] - 1))
    assert stale.status_code == 409 and stale.json()["detail"]["current_version"] == first["version"]

    # valid at creation, stale at commit: another writer got in between
    url = base + tus_create(session, base, oaio_id, "doc.txt", 2, base_version=str(first["version"])).headers["Location"]
    second = api.put_file(oaio_id, "doc.txt", b"v2")
    resp = tus_patch(session, url, 0, b"v3")
    assert resp.status_code == 409 and resp.json()["error"] == "version_conflict"
    assert api.get_file(oaio_id, "doc.txt") == b"v2"
    assert api.get_object(oaio_id)["version"] == second["version"]
    # base_version=0 means "must not exist yet"
    assert tus_create(session, base, oaio_id, "doc.txt", 2, base_version="0").status_code == 409
    assert tus_create(session, base, oaio_id, "new.txt", 2, base_version="0").status_code == 201
    api.make_dir(oaio_id, "folder")
    assert tus_create(session, base, oaio_id, "folder", 2).status_code == 409


def test_protocol_errors_are_precise(live_server, make_user):
    user = make_user("tus")
    session, base = basic_session(user), live_server.url
    oaio_id = new_id()
    no_version = session.post(base + protocol.PATH_UPLOADS, headers={"Upload-Length": "1"})
    assert no_version.status_code == 412
    assert tus_create(session, base, oaio_id, "../escape", 1).status_code == 422
    assert tus_create(session, base, oaio_id, "/abs", 1).status_code == 422
    assert tus_create(session, base, "bad/id", "a", 1).status_code == 422
    missing = session.post(base + protocol.PATH_UPLOADS, headers=dict(TUS, **{"Upload-Length": "1"}))
    assert missing.status_code == 400
    assert tus_create(session, base, oaio_id, "big", 1 << 50).status_code == 413
    url = base + tus_create(session, base, oaio_id, "a.txt", 10).headers["Location"]
    wrong_type = session.patch(url, data=b"x", headers=dict(TUS, **{"Upload-Offset": "0",
                                                                    "Content-Type": "text/plain"}))
    assert wrong_type.status_code == 415
    ahead = tus_patch(session, url, 5, b"x")
    assert ahead.status_code == 409 and ahead.json()["detail"]["offset"] == 0
    too_long = tus_patch(session, url, 0, b"x" * 11)
    assert too_long.status_code == 413
    assert session.head(url, headers=TUS).headers["Upload-Offset"] == "0"
    unauthenticated = tus_patch(basic_session(user + "-nope"), url, 0, b"x")
    assert unauthenticated.status_code == 401


def test_creation_with_upload_and_termination(live_server, make_user, api_for):
    user = make_user("tus")
    session, base = basic_session(user), live_server.url
    oaio_id = new_id()
    data = b"all at once"
    headers = dict(TUS, **{"Upload-Length": str(len(data)), "Content-Type": protocol.TUS_CONTENT_TYPE,
                           "Upload-Metadata": protocol.encode_upload_metadata({"oaio_id": oaio_id, "path": "x"})})
    resp = session.post(base + protocol.PATH_UPLOADS, data=data, headers=headers)
    assert resp.status_code == 201 and resp.headers["Upload-Offset"] == str(len(data))
    assert resp.headers[protocol.HEADER_UPLOAD_RESULT_SHA256] == sha256(data)
    assert api_for(user).get_file(oaio_id, "x") == data

    url = base + tus_create(session, base, oaio_id, "y", 100).headers["Location"]
    tus_patch(session, url, 0, b"z" * 50)
    assert session.delete(url, headers=TUS).status_code == 204
    assert session.head(url, headers=TUS).status_code == 404
    assert tus_patch(session, url, 50, b"z" * 50).status_code == 404
    assert "y" not in [f["path"] for f in api_for(user).get_object(oaio_id)["files"]]


def test_rights_reader_and_stranger(live_server, make_user, api_for):
    owner, reader, stranger = make_user("own"), make_user("read"), make_user("str")
    api = api_for(owner)
    oaio_id = new_id()
    api.create_object({}, oaio_id)
    api.set_subscription(oaio_id, reader, "r")
    base = live_server.url
    assert tus_create(basic_session(reader), base, oaio_id, "f", 1).status_code == 403
    assert tus_create(basic_session(stranger), base, oaio_id, "f", 1).status_code == 404
    # an updater may upload; someone else's upload URL is invisible to everyone else
    api.set_subscription(oaio_id, reader, "U")
    url = base + tus_create(basic_session(reader), base, oaio_id, "f", 4).headers["Location"]
    for other in (owner, stranger):
        assert basic_session(other).head(url, headers=TUS).status_code == 404
        assert tus_patch(basic_session(other), url, 0, b"evil").status_code == 404
        assert basic_session(other).delete(url, headers=TUS).status_code == 404
    # rights are checked again at commit: revoked meanwhile -> refused, nothing committed
    api.set_subscription(oaio_id, reader, "r")
    assert tus_patch(basic_session(reader), url, 0, b"data").status_code == 403
    assert "f" not in [f["path"] for f in api.get_object(oaio_id)["files"]]


def test_plain_put_and_ranged_get(live_server, make_user, api_for):
    user = make_user("plain")
    api = api_for(user)
    oaio_id = new_id()
    api.create_object({}, oaio_id)
    data = bytes(range(256)) * 1000
    doc = api.put_file(oaio_id, "a/b.bin", data, mtime=1_600_000_000.5)
    assert (doc["sha256"], doc["size"], doc["mtime"]) == (sha256(data), len(data), 1_600_000_000.5)
    session = basic_session(user)
    url = live_server.url + protocol.PATH_FILE.format(oaio_id=oaio_id, path="a/b.bin")
    full = session.get(url)
    assert full.content == data and full.headers["ETag"] == f'"{sha256(data)}"'
    part = session.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert session.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
    assert session.get(url, headers={"If-None-Match": f'"{sha256(data)}"'}).status_code == 304
    wrong = session.put(url, data=b"xyz", headers={protocol.HEADER_SHA256: sha256(b"abc")})
    assert wrong.status_code == 460
    assert session.put(url, data=b"xyz", params={"base_version": 0}).status_code == 409
    assert session.get(url).content == data
    assert basic_session(make_user("stranger")).get(url).status_code == 404
