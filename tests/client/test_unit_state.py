"""Unit tests of the client's local state store and conflict helpers (no server)."""
from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from oaiofs.client.conflicts import merge_path_lists, merge_with_conflict_copies
from oaiofs.client.local_paths import list_files, safe_join
from oaiofs.client.local_state import LocalState
from oaiofs.client.oaio_object import OaiObject
from oaiofs.errors import InvalidValue
from oaiofs.protocol import OLDEST_SYNC_STAMP


def test_merge_different_keys_and_clash_keeps_both() -> None:
    base = {"a": 1, "b": 1, "c": 1}
    local = {"a": 2, "b": 1, "c": 5}
    server = {"a": 1, "b": 3, "c": 6}
    merged, clashes = merge_with_conflict_copies(base, local, server, "alice@pc")
    assert merged["a"] == 2 and merged["b"] == 3 and merged["c"] == 6
    assert clashes == ["c"]
    kept = [k for k in merged if k.startswith("c (conflict alice@pc ")]
    assert len(kept) == 1 and merged[kept[0]] == 5


def test_merge_removals_and_file_path_lists() -> None:
    merged, clashes = merge_with_conflict_copies({"x": 1, "y": 1}, {"y": 1}, {"x": 1, "y": 2}, "o")
    assert merged == {"y": 2} and clashes == []
    assert merge_path_lists(["a", "b"], ["a", "c"], ["a", "b", "d"]) == ["a", "d", "c"]
    merged, clashes = merge_with_conflict_copies({"_file_paths": ["a"]}, {"_file_paths": ["a", "l"]},
                                                 {"_file_paths": ["a", "s"]}, "o")
    assert merged["_file_paths"] == ["a", "s", "l"] and clashes == []


def test_safe_join_refuses_escapes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for bad in ("../x", "/etc/passwd", "a/../../x", "a\\b", "", "a//b"):
        with pytest.raises(InvalidValue):
            safe_join(root, bad)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(InvalidValue):
        safe_join(root, "link/escaped.txt")
    assert safe_join(root, "a/b.txt") == root / "a" / "b.txt"


def test_list_files_skips_symlinks(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / ".hidden").write_text("h")
    (tmp_path / "top.txt").write_text("t")
    (tmp_path / "ln").symlink_to(tmp_path / "top.txt")
    assert list_files(tmp_path) == ["d/.hidden", "top.txt"]


def test_records_are_json_atomic_and_seen_by_another_instance(tmp_path: Path) -> None:
    one, two = LocalState(tmp_path), LocalState(tmp_path)
    assert one.last_sync_stamp == OLDEST_SYNC_STAMP
    with one.locked():
        one.save(OaiObject("id1", client_values={"k": "v"}))
    data = json.loads((tmp_path / "objz" / "id1.json").read_text())
    assert data["client_values"] == {"k": "v"}
    assert not [p for p in (tmp_path / "objz").iterdir() if ".tmp-" in p.name]
    with two.locked():
        assert two.get("id1").client_values == {"k": "v"}
        two.remove("id1")
    with one.locked():
        assert one.get("id1") is None


def test_corrupt_record_is_quarantined_not_fatal(tmp_path: Path) -> None:
    state = LocalState(tmp_path)
    with state.locked():
        state.save(OaiObject("good"))
    (tmp_path / "objz" / "bad.json").write_text("{not json")
    (tmp_path / "objz" / "odd.json").write_text(json.dumps({"oaio_id": "other"}))
    fresh = LocalState(tmp_path)
    with fresh.locked():
        assert set(fresh.objects) == {"good"}
    problems = fresh.take_problems()
    assert len(problems) == 2 and all("quarantine" in p for p in problems)
    assert sorted(p.name.split(".json")[0] for p in (tmp_path / "quarantine").iterdir()) == ["bad", "odd"]


def test_lock_is_needed_for_writes(tmp_path: Path) -> None:
    state = LocalState(tmp_path)
    with pytest.raises(RuntimeError):
        state.save(OaiObject("x"))


def _bump_counter(root: str, key: str, times: int) -> None:
    state = LocalState(Path(root))
    for _ in range(times):
        with state.locked():
            obj = state.get("shared")
            obj.client_values[key] = obj.client_values.get(key, 0) + 1
            obj.client_values["total"] = obj.client_values.get("total", 0) + 1
            state.save(obj)


def test_two_processes_do_not_lose_updates(tmp_path: Path) -> None:
    state = LocalState(tmp_path)
    with state.locked():
        state.save(OaiObject("shared"))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_bump_counter, args=(str(tmp_path), f"p{i}", 40)) for i in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    with state.locked():
        values = state.get("shared").client_values
    assert values == {"p0": 40, "p1": 40, "total": 80}
