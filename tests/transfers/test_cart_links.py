"""Carts carry POSIX metadata: symbolic links as tar SYMTYPE members, mode bits and exact mtimes.

The server's tar is read with Python's ``tarfile`` (the reference reader) and with
``CartDownloader``; hostile link targets (absolute, ``..`` escaping, escaping through
another link) are stored as given on the server but never created by the client.
"""
from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import tarfile
from pathlib import Path

import pytest
import requests

from oaiofs import protocol
from oaiofs.client.carts import CartDownloader, cart_entry
from oaiofs.client.tarstream import TarStream, mtime_ns
from oaiofs.errors import ChecksumMismatch, Conflict
from oaiofs.server.tarlayout import TarLayout, TarMember

from tests.conftest import PASSWORD

from .helpers import new_id, sha256

LINKS = {                                   # path -> target, stored as given
    "bin/tool": "../lib/tool.py",           # inside
    "dangling": "no/such/file",             # inside, dangling
    "long": "d/" * 60 + "x",                # > 100 bytes: PAX linkpath
    "up": "..",                             # escapes by itself
    "abs": "/etc/passwd",                   # absolute
    "lib/evil": "../../../../etc/shadow",   # climbs out
    "sub/hop": "../bin",                    # inside by name...
    "sub/chain": "hop/../../..",            # ...inside by name, outside through sub/hop
}
ESCAPING = {"up", "abs", "lib/evil", "sub/chain"}


def link_sha(target: str) -> str:
    return hashlib.sha256(target.encode()).hexdigest()


@pytest.fixture
def tree(make_user, api_for):
    """An object with files (exec bits, ns mtimes, one before 1970) and links of every kind."""
    user = make_user("cartlinks")
    api = api_for(user)
    oaio_id = new_id()
    api.create_object({}, oaio_id)
    rng = random.Random(1414)
    files: dict[str, tuple[bytes, int, int]] = {}
    for i, (path, mode) in enumerate([("lib/tool.py", 0o755), ("data.txt", 0o644), ("ro.txt", 0o444),
                                      ("secret", 0o600), ("d/x", 0o750)]):
        data = rng.randbytes(rng.randrange(0, 3000))
        when = 1_500_000_000_000_000_000 + rng.randrange(10 ** 12) if i else -86_400_123_456_789
        api.put_file(oaio_id, path, data, mode=mode, mtime_ns=when)
        files[path] = (data, mode, when)
    links: dict[str, tuple[str, int]] = {}
    for path, target in LINKS.items():
        when = 1_600_000_000_000_000_000 + rng.randrange(10 ** 12)
        api.make_link(oaio_id, path, target, mtime_ns=when)
        links[path] = (target, when)
    return {"api": api, "user": user, "oaio_id": oaio_id, "files": files, "links": links}


def entries_of(tree) -> list[dict[str, str]]:
    out = [cart_entry(tree["oaio_id"], p, sha256(d)) for p, (d, _m, _t) in tree["files"].items()]
    out += [cart_entry(tree["oaio_id"], p, link_sha(t)) for p, (t, _w) in tree["links"].items()]
    return out


def test_the_cart_tar_holds_links_modes_and_exact_mtimes(tree, live_server):
    """Python's tarfile reads the server's tar: SYMTYPE members with the stored targets, modes, mtimes."""
    downloader = CartDownloader(tree["api"])
    uid = downloader.create(entries_of(tree))
    assert downloader.wait(uid, timeout=60) == "ready"
    resp = requests.get(f"{live_server.url}{protocol.PATH_CART.format(uid=uid)}", params={"filename": "t.tar"},
                        auth=(tree["user"], PASSWORD), timeout=60)
    assert resp.status_code == 200 and len(resp.content) == int(resp.headers["Content-Length"])
    with tarfile.open(fileobj=io.BytesIO(resp.content)) as tar:
        members = {m.name[len("t/"):]: m for m in tar.getmembers()}
        assert set(members) == set(tree["files"]) | set(tree["links"])
        for path, (data, mode, when) in tree["files"].items():
            m = members[path]
            assert m.isreg() and m.mode == mode and tar.extractfile(m).read() == data, path
            assert m.pax_headers["OAIO.sha256"] == sha256(data)
            assert mtime_ns(m) == when, path                       # exact ns (PAX mtime), also < 1970
            assert abs(m.mtime - when / 1e9) < 1e-5
        for path, (target, when) in tree["links"].items():
            m = members[path]
            assert m.issym() and m.linkname == target and m.size == 0, path
            assert m.pax_headers["OAIO.sha256"] == link_sha(target) and mtime_ns(m) == when
    # our lean reader agrees with tarfile, member by member
    seen = {}
    stream = TarStream(io.BytesIO(resp.content))
    for member, _at in stream:
        seen[member.name[len("t/"):]] = (member.type, member.linkname, member.mode, mtime_ns(member))
    assert seen == {p: (m.type, m.linkname, m.mode, mtime_ns(m)) for p, m in members.items()}
    # a link member has no bytes to serve alone
    with pytest.raises(Conflict, match="symbolic link"):
        downloader.open_member(uid, "bin/tool")
    downloader.delete(uid)


def test_gnu_tar_unpacks_the_cart_with_links_modes_and_mtimes(tree, live_server, tmp_path: Path):
    """A real program: ``tar x`` of the cart gives the stored links, modes and ns mtimes."""
    downloader = CartDownloader(tree["api"])
    uid = downloader.create(entries_of(tree))
    downloader.wait(uid, timeout=60)
    resp = requests.get(f"{live_server.url}{protocol.PATH_CART.format(uid=uid)}", params={"filename": "t.tar"},
                        auth=(tree["user"], PASSWORD), timeout=60)
    (tmp_path / "c.tar").write_bytes(resp.content)
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(tmp_path / "c.tar"), "-C", str(out)], check=True)
    top = out / "t"
    for path, (data, mode, when) in tree["files"].items():
        st = (top / path).stat()
        assert (top / path).read_bytes() == data and st.st_mode & 0o777 == mode and st.st_mtime_ns == when, path
    for path, (target, when) in tree["links"].items():
        assert os.readlink(top / path) == target and (top / path).lstat().st_mtime_ns == when, path


def test_cart_downloader_creates_safe_links_and_refuses_escaping_ones(tree, tmp_path: Path):
    downloader = CartDownloader(tree["api"])
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "work" / "dest"
    written = downloader.fetch(entries_of(tree), dest)
    for path, (data, mode, when) in tree["files"].items():
        st = (dest / path).stat()
        assert (dest / path).read_bytes() == data and st.st_mode & 0o777 == mode and st.st_mtime_ns == when, path
    for path, (target, when) in tree["links"].items():
        link = dest / path
        if path in ESCAPING:
            assert not os.path.lexists(link), path
        else:
            assert os.readlink(link) == target and link.lstat().st_mtime_ns == when, path
            assert link in written
    assert {r[0] for r in downloader.refused_links} == ESCAPING
    assert (dest / "bin" / "tool").read_bytes() == tree["files"]["lib/tool.py"][0]
    assert not list(dest.rglob("*.part"))
    # the drive's cache wants its files read-writable: keep_modes=False leaves the created mode
    cache = CartDownloader(tree["api"], keep_modes=False)
    ro = cache.fetch([cart_entry(tree["oaio_id"], "ro.txt", sha256(tree["files"]["ro.txt"][0]))], tmp_path / "c")
    assert [p.stat().st_mode & 0o777 for p in ro] == [0o600]


def test_cart_downloader_never_writes_through_links(tree, tmp_path: Path):
    """A folder or ``.part`` name that is already a link in the destination is not followed."""
    api, oaio_id = tree["api"], tree["oaio_id"]
    downloader = CartDownloader(api)
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "d").symlink_to(outside, target_is_directory=True)       # folder 'd' is a link out
    data, _mode, _when = tree["files"]["d/x"]
    with pytest.raises(Exception, match="symbolic link"):
        downloader.fetch([cart_entry(oaio_id, "d/x", sha256(data))], dest)
    assert list(outside.iterdir()) == []
    # a planted '<name>.part' link and a link at the name itself are replaced, not written through
    victim = outside / "victim"
    victim.write_bytes(b"keep")
    (dest / "data.txt.part").symlink_to(victim)
    (dest / "secret").symlink_to(victim)
    want = [cart_entry(oaio_id, p, sha256(tree["files"][p][0])) for p in ("data.txt", "secret")]
    downloader.fetch(want, dest)
    assert victim.read_bytes() == b"keep"
    assert not (dest / "secret").is_symlink() and (dest / "secret").read_bytes() == tree["files"]["secret"][0]
    # a link member whose target does not match the hashsum asked for fails like a file would
    with pytest.raises(ChecksumMismatch):
        downloader.fetch([cart_entry(oaio_id, "bin/tool", link_sha("something else"))], tmp_path / "x")


def test_layout_of_links_is_what_tarfile_writes():
    """Unit: sizes and bytes of a laid-out tar with links and ns mtimes read back exactly."""
    members = [TarMember("t/a", 3, 0.0, "k", mode=0o755, mtime_ns=1_234_567_890_123_456_789),
               TarMember("t/l", 0, 0.0, "", mode=0o777, mtime_ns=-1_500_000_001, target="a/" * 80),
               TarMember("t/old", 2, 1_600_000_000.0, "k2")]
    layout = TarLayout(members)
    blobs = {"k": b"abc", "k2": b"xy"}
    raw = b"".join(layout.iter_range(lambda key, s, e: iter([blobs[key][s:e]])))
    assert len(raw) == layout.size
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        a, link, old = tar.getmembers()
    assert a.mode == 0o755 and mtime_ns(a) == 1_234_567_890_123_456_789
    assert link.issym() and link.linkname == "a/" * 80 and mtime_ns(link) == -1_500_000_001
    assert old.mode == 0o644 and old.mtime == 1_600_000_000 and "mtime" not in old.pax_headers
