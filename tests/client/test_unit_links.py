"""Unit tests of the client's link handling: listing, safe placing, escape checks, PAX mtimes."""
from __future__ import annotations

import os
import random
import tarfile
from pathlib import Path

import pytest

from oaiofs import protocol
from oaiofs.client import file_meta
from oaiofs.client.safe_links import escaped, place_link, prepare_parent
from oaiofs.client.tarstream import mtime_ns
from oaiofs.errors import InvalidValue
from oaiofs.server.tarlayout import pax_mtime


def test_list_entries_lists_links_without_following_them(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    os.symlink("d", tmp_path / "to-dir")              # a link to a folder: listed, not walked into
    os.symlink("missing", tmp_path / "d" / "dangling")
    os.symlink("/etc", tmp_path / "abs")
    assert file_meta.list_links(tmp_path) == ["abs", "d/dangling", "to-dir"]
    assert file_meta.list_entries(tmp_path) == ["abs", "d/dangling", "d/f", "to-dir"]


def test_place_link_never_goes_through_a_link(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "out")
    with pytest.raises(InvalidValue, match="symbolic link"):
        place_link(root, "out/l", "x")
    with pytest.raises(InvalidValue, match="symbolic link"):
        prepare_parent(root, "out/sub/file")
    assert list(outside.iterdir()) == []
    for target in ("/etc/passwd", "../x", "a/../../x", ""):
        with pytest.raises(InvalidValue):
            place_link(root, "l", target)
    assert place_link(root, "a/b/l", "../../x") and os.readlink(root / "a/b/l") == "../../x"
    assert not place_link(root, "a/b/l", "../../x")                   # already that link
    (root / "file").write_text("replaced by a link")
    assert place_link(root, "file", "x") and os.readlink(root / "file") == "x"
    (root / "dir").mkdir()
    with pytest.raises(InvalidValue, match="folder"):
        place_link(root, "dir", "x")


def test_escaped_finds_links_leading_out_through_other_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    place_link(root, "sub/hop", "..")                 # the root itself: inside
    place_link(root, "sub/chain", "hop/../..")        # by name inside, really the root's parent
    place_link(root, "sub/ok", "hop/sub")
    links = [root / "sub/hop", root / "sub/chain", root / "sub/ok"]
    assert escaped(root, links) == [root / "sub/chain"]


def test_link_escapes_matches_the_resolved_path_for_random_plain_targets(tmp_path: Path) -> None:
    """With no other links in the way, the name check agrees with resolving the path."""
    rng = random.Random(14)
    root = tmp_path / "r"
    root.mkdir()
    for i in range(300):
        depth = rng.randrange(0, 4)
        rel = "/".join([f"d{rng.randrange(3)}" for _ in range(depth)] + [f"l{i}"])
        target = "/".join(rng.choice(["..", ".", "a", "b", ""]) for _ in range(rng.randrange(1, 6))) or "."
        target = target.lstrip("/") or "."
        inside = os.path.normpath(os.path.join(root, os.path.dirname(rel), target))
        really_out = os.path.commonpath([str(root), inside]) != str(root)
        assert protocol.link_escapes(rel, target) == really_out, (rel, target)


@pytest.mark.parametrize("ns", [0, 1, 999_999_999, 1_000_000_000, 1_500_000_000_123_456_789, -1, -1_500_000_001,
                                (1 << 62) + 7])
def test_pax_mtime_round_trips_exactly(ns: int) -> None:
    info = tarfile.TarInfo("x")
    info.pax_headers = {"mtime": pax_mtime(ns)}
    assert mtime_ns(info) == ns
