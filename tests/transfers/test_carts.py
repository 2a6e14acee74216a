"""Carts (Pacifica cartd API) and the CartDownloader against the real server."""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest
import urllib3
from tests.conftest import PASSWORD, wait_until

from oaiofs import protocol
from oaiofs.client import carts as client_carts
from oaiofs.client.api import ApiClient
from oaiofs.client.carts import CartDownloader, cart_entry
from oaiofs.client.tarstream import TarStream
from oaiofs.errors import ChecksumMismatch, Conflict, InvalidValue, NotFound

from .helpers import TUS, basic_session, new_id, sha256, tus_create

NAMES = ["a.txt", "empty", "block512", "block513", "sub/deep/x.bin", "ünïcode name.txt",
         "long/" + "n" * 150 + ".dat"]


def _fill(api: ApiClient, oaio_id: str, count: int) -> dict[str, bytes]:
    """Attach ``count`` files of varied sizes and names; returns path -> bytes."""
    files: dict[str, bytes] = {}
    sizes = [5, 0, 512, 513, 70_000, 1, 3000]
    for i in range(count):
        name = NAMES[i] if i < len(NAMES) else f"many/f{i:03d}.bin"
        files[name] = os.urandom(sizes[i % len(sizes)] + (i if i >= len(NAMES) else 0))
        api.put_file(oaio_id, name, files[name], mtime=1_600_000_000 + i)
    return files


@pytest.fixture
def shared(make_user, api_for):
    """An object with many files, its owner and a read-only subscriber."""
    owner, reader = make_user("cart-owner"), make_user("cart-reader")
    api = api_for(owner)
    oaio_id = new_id()
    api.create_object({}, oaio_id)
    files = _fill(api, oaio_id, 40)
    api.set_subscription(oaio_id, reader, "r")
    return {"owner": owner, "reader": reader, "oaio_id": oaio_id, "files": files}


def test_reader_downloads_many_files_verified(shared, api_for, tmp_path: Path, live_server):
    api = api_for(shared["reader"])
    entries = [cart_entry(shared["oaio_id"], path, sha256(data)) for path, data in shared["files"].items()]
    downloader = CartDownloader(api)
    written = downloader.fetch(entries, tmp_path / "out")
    assert len(written) == len(shared["files"])
    for i, (path, data) in enumerate(shared["files"].items()):
        target = tmp_path / "out" / path
        assert target.read_bytes() == data, path
        assert int(target.stat().st_mtime) == 1_600_000_000 + i
    assert not list((tmp_path / "out").rglob("*.part"))
    # fetch deleted the cart; a read-only subscriber still cannot upload
    assert tus_create(basic_session(shared["reader"]), live_server.url, shared["oaio_id"], "z", 1).status_code == 403


def test_other_hash_types_are_computed_in_the_background(shared, api_for, tmp_path: Path):
    api = api_for(shared["reader"])
    files, oaio_id = shared["files"], shared["oaio_id"]
    entries = [{"id": protocol.cart_file_id(oaio_id, p), "path": f"copy/{p}", "hashtype": algo,
                "hashsum": hashlib.new(algo, files[p]).hexdigest()}
               for p, algo in (("ünïcode name.txt", "md5"), ("sub/deep/x.bin", "sha1"), ("block513", "sha256"))]
    downloader = CartDownloader(api)
    uid = downloader.create(entries)
    assert downloader.wait(uid, timeout=30) == "ready"
    downloader.download(uid, tmp_path)
    assert (tmp_path / "copy/sub/deep/x.bin").read_bytes() == files["sub/deep/x.bin"]

    bad = dict(entries[0], hashsum=hashlib.md5(b"not it").hexdigest())
    failed = downloader.create([entries[1], bad])
    with pytest.raises(ChecksumMismatch, match=bad["id"]):
        downloader.wait(failed, timeout=30)
    status, message = downloader.status(failed)
    assert status == "error" and bad["id"] in message          # non-ASCII ids survive the header
    with pytest.raises(Conflict):
        api.request("GET", protocol.PATH_CART.format(uid=failed), params={"filename": "x.tar"})
    wrong_sha = downloader.create([dict(entries[2], hashsum=sha256(b"nope"))])
    with pytest.raises(ChecksumMismatch):
        downloader.wait(wrong_sha, timeout=5)


def test_cart_pins_the_versions_it_was_made_from(shared, api_for, tmp_path: Path):
    owner = api_for(shared["owner"])
    reader = CartDownloader(api_for(shared["reader"]))
    oaio_id, old = shared["oaio_id"], shared["files"]["a.txt"]
    uid = reader.create([cart_entry(oaio_id, "a.txt", sha256(old))])
    reader.wait(uid, 10)
    owner.put_file(oaio_id, "a.txt", b"overwritten later")
    assert reader.open_member(uid, "a.txt").content == old
    assert reader.open_member(uid, "a.txt", start=2).content == old[2:]
    for start, end, piece in ((0, None, 1 << 20), (1, len(old) - 1, 3), (2, 5, 4)):   # the drive's read seam
        with reader.member_pieces(uid, "a.txt", start, end, piece) as pieces:
            got = [bytes(p) for p in pieces]                 # each piece is valid until the next
        assert b"".join(got) == old[start:end], (start, end)
        assert all(0 < len(p) <= piece for p in got)
    reader.download(uid, tmp_path)
    assert (tmp_path / "a.txt").read_bytes() == old


def test_whole_cart_tar_has_length_and_ranges(shared, live_server):
    session = basic_session(shared["reader"])
    oaio_id, files = shared["oaio_id"], shared["files"]
    body = {"fileids": [cart_entry(oaio_id, p, sha256(d), "/" + p) for p, d in files.items()]}
    url = live_server.url + protocol.PATH_CART.format(uid="tar-ranges")
    assert session.post(url, json=body).status_code == 201
    assert session.head(url, params={"wait": 10}).headers[protocol.CART_STATUS_HEADER] == "ready"
    whole = session.get(url, params={"filename": "bundle.tar"})
    assert whole.status_code == 200 and int(whole.headers["Content-Length"]) == len(whole.content)
    with tarfile.open(fileobj=io.BytesIO(whole.content)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    assert members == {f"bundle/{p}": d for p, d in files.items()}
    part = session.get(url, params={"filename": "bundle.tar"}, headers={"Range": "bytes=1000-20999"})
    assert part.status_code == 206 and part.content == whole.content[1000:21000]
    assert session.delete(url).status_code == 200
    assert session.head(url).status_code == 404


def test_bad_carts_are_refused(shared, live_server, make_user):
    session = basic_session(shared["reader"])
    oaio_id, data = shared["oaio_id"], shared["files"]["a.txt"]
    url = live_server.url + protocol.PATH_CART.format(uid="bad")
    good = cart_entry(oaio_id, "a.txt", sha256(data))
    for entry, status in ((dict(good, path="../escape"), 422), (dict(good, path="a//b"), 422),
                          (dict(good, id="no-slash"), 422), (dict(good, hashtype="crc99"), 422),
                          (dict(good, hashsum="zz"), 422), ({"id": good["id"]}, 422),
                          (dict(good, id=protocol.cart_file_id(oaio_id, "missing")), 404)):
        resp = session.post(url, json={"fileids": [entry]})
        assert resp.status_code == status, (entry, resp.text)
    assert session.post(url, json={"fileids": [good, dict(good)]}).status_code == 422   # same bundle path
    assert session.post(url, data=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
    # a stranger can neither put someone else's files into a cart nor see someone else's cart
    stranger = basic_session(make_user("cart-stranger"))
    assert stranger.post(url, json={"fileids": [good]}).status_code == 404
    assert session.post(url, json={"fileids": [good]}).status_code == 201
    assert stranger.head(url).status_code == 404
    assert stranger.get(url, params={"filename": "x"}).status_code == 404
    assert stranger.get(url + "/files/a.txt").status_code == 404
    assert stranger.delete(url).status_code == 404
    assert session.head(url).status_code == 204


class _CutOnce:
    """Make the next cart stream fail once after ``after`` bytes (a dropped connection)."""

    def __init__(self, monkeypatch, after: int) -> None:
        self.after, self.read, self.fired = after, 0, False
        original = TarStream._read

        def read(stream, size):
            data = original(stream, size)
            self.read += len(data)
            if not self.fired and self.read > self.after:
                self.fired = True
                raise urllib3.exceptions.ProtocolError("connection cut by the test")
            return data
        monkeypatch.setattr(TarStream, "_read", read)


def _cart_of_three(api: ApiClient) -> tuple[CartDownloader, str, dict[str, bytes]]:
    oaio_id = new_id()
    api.create_object({}, oaio_id)
    files = {"big.bin": os.urandom(1_500_000), "small.bin": os.urandom(3_000_000), "tail.bin": b"tail"}
    for path, data in files.items():
        api.put_file(oaio_id, path, data)
    downloader = CartDownloader(api, backoff_base_s=0.01)
    uid = downloader.create([cart_entry(oaio_id, p, sha256(d)) for p, d in files.items()])
    downloader.wait(uid, 10)
    return downloader, uid, files


def _check(dest: Path, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        assert (dest / path).read_bytes() == data
    assert not list(dest.rglob("*.part"))


@pytest.mark.parametrize("cut_at", [1_200_000, 3_000_000])    # inside the big / the small member
def test_download_cut_inside_a_member_resumes_it_with_range(make_user, api_for, tmp_path: Path, monkeypatch,
                                                            cut_at: int):
    downloader, uid, files = _cart_of_three(api_for(make_user("resume-cart")))
    cut = _CutOnce(monkeypatch, cut_at)
    resumed: list[tuple[str, int]] = []
    original = downloader.open_member
    monkeypatch.setattr(downloader, "open_member",
                        lambda uid, path, start=0, end=None: resumed.append((path, start))
                        or original(uid, path, start, end))
    downloader.download(uid, tmp_path)
    assert cut.fired and len(resumed) == 1
    path, start = resumed[0]
    assert start > 0 and (tmp_path / path).stat().st_size == len(files[path])   # continued, not restarted
    _check(tmp_path, files)
    assert downloader.bytes_received < sum(map(len, files.values())) + client_carts.COPY_PIECE + 64 * 1024


def test_download_cut_between_members_resumes_the_tar_with_range(make_user, api_for, tmp_path: Path):
    downloader, uid, files = _cart_of_three(api_for(make_user("resume-tar")))
    cuts: list[int] = []

    def cut_after_first_member(done: int) -> None:
        if done == 1 and not cuts:
            cuts.append(downloader.bytes_received)
            raise urllib3.exceptions.ProtocolError("connection cut by the test")

    downloader.download(uid, tmp_path, on_progress=cut_after_first_member)
    assert cuts
    _check(tmp_path, files)
    assert downloader.bytes_received < sum(map(len, files.values())) + 256 * 1024


def test_unsafe_tar_members_are_refused():
    for name in ("data/../evil", "/etc/passwd", "other/x", "data/a/../../b"):
        with pytest.raises(InvalidValue):
            client_carts.member_path(name)
    assert client_carts.member_path("data/a/b.txt") == "a/b.txt"


def test_carts_are_evicted_over_quota_and_expire(server_factory):
    server = server_factory(env={"OAIOFS_CART_QUOTA_BYTES": "150000", "OAIOFS_CART_TTL_S": "3",
                                 "OAIOFS_PURGE_INTERVAL_S": "0.3"})
    user = server.add_user("quota")
    api = ApiClient(server.url, user, PASSWORD)
    oaio_id = new_id()
    api.create_object({}, oaio_id)
    data = os.urandom(100_000)
    api.put_file(oaio_id, "f", data)
    downloader = CartDownloader(api)
    first = downloader.create([cart_entry(oaio_id, "f", sha256(data))])
    second = downloader.create([cart_entry(oaio_id, "f", sha256(data))])
    with pytest.raises(NotFound):            # least recently used, over the quota
        downloader.status(first)
    assert downloader.status(second)[0] == "ready"
    wait_until(lambda: _gone(downloader, second), timeout=30, message="the cart to expire")
    api.close()


def _gone(downloader: CartDownloader, uid: str) -> bool:
    try:
        downloader.status(uid)
    except NotFound:
        return True
    return False


def test_tus_head_shape_is_unaffected_by_carts(live_server, make_user):
    # carts and uploads share the auth and error machinery; a stray cart path is a clean 404 JSON error
    session = basic_session(make_user("misc"))
    resp = session.get(live_server.url + protocol.PATH_CART.format(uid="nope"), params={"filename": "x"})
    assert resp.status_code == 404 and resp.json()["error"] == "not_found"
    assert session.head(live_server.url + protocol.PATH_UPLOADS + "nope", headers=TUS).status_code == 404
    assert tus_create(session, live_server.url, new_id(), "ok", 0).status_code == 201
