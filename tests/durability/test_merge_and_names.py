"""Pure helpers: the values three-way merge and conflict-copy names."""
from __future__ import annotations

import datetime as dt

from oaiofs.protocol import MAX_NAME_BYTES, normalize_file_path
from oaiofs.conflicts import conflict_path
from oaiofs.merge import merge_values

WHEN = dt.datetime(2026, 11, 21, 10, 15, tzinfo=dt.timezone.utc)


def local_label() -> str:
    return WHEN.astimezone().strftime("%Y-%m-%d %H-%M")


def test_changes_to_different_keys_merge() -> None:
    base = {"a": 1, "b": 1, "gone": 1, "kept": 1}
    local = {"a": 2, "b": 1, "kept": 1, "new_local": "x"}              # a changed, gone deleted, key added
    server = {"a": 1, "b": 3, "gone": 1, "kept": 1, "new_server": "y"}  # b changed, key added
    result = merge_values(base, local, server)
    assert result.values == {"a": 2, "b": 3, "kept": 1, "new_local": "x", "new_server": "y"}
    assert result.clashes == []


def test_same_key_changed_differently_is_a_clash_server_value_stays() -> None:
    result = merge_values({"k": 1, "j": 1}, {"k": "mine", "j": 2}, {"k": "theirs", "j": 1})
    assert result.values == {"k": "theirs", "j": 2} and result.clashes == ["k"]


def test_same_change_on_both_sides_and_delete_vs_change() -> None:
    assert merge_values({"k": 1}, {"k": 2}, {"k": 2}).clashes == []
    both_deleted = merge_values({"k": 1}, {}, {})
    assert both_deleted.values == {} and both_deleted.clashes == []
    deleted_here_changed_there = merge_values({"k": 1}, {}, {"k": 5})
    assert deleted_here_changed_there.values == {"k": 5} and deleted_here_changed_there.clashes == ["k"]


def test_unknown_base_treats_every_difference_as_a_clash() -> None:
    result = merge_values(None, {"k": 1, "same": 0}, {"k": 2, "same": 0})
    assert result.values == {"k": 2, "same": 0} and result.clashes == ["k"]


def test_conflict_names_keep_folder_and_extension() -> None:
    label = local_label()
    assert conflict_path("docs/report.txt", "alice@laptop", WHEN) == \
        f"docs/report (conflict alice@laptop {label}).txt"
    assert conflict_path("a.tar.gz", "bob@pc", WHEN, 2) == f"a.tar (conflict bob@pc {label} 2).gz"
    assert conflict_path(".bashrc", "bob@pc", WHEN) == f".bashrc (conflict bob@pc {label})"
    assert conflict_path("values.json", "bob@pc", WHEN) == f"values (conflict bob@pc {label}).json"


def test_conflict_names_are_valid_paths_even_for_long_names_and_odd_origins() -> None:
    long_name = "dir/" + "é" * 200 + ".txt"
    name = conflict_path(long_name, "x/y\\z\x01@host", WHEN)
    assert normalize_file_path(name) == name
    assert len(name.split("/")[-1].encode()) <= MAX_NAME_BYTES and name.endswith(").txt")
    assert "/" not in name.split("/", 1)[1]
