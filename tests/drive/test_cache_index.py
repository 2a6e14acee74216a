"""Unit: the cache index keeps one SQLite connection, whatever thread calls it, and persists."""
from __future__ import annotations

import sqlite3
import threading

import diskcache

from oaiofs.vfs.cache_index import CacheIndex


def test_calls_from_many_threads_open_no_new_connection(tmp_path, monkeypatch):
    index = CacheIndex(tmp_path / "index")
    index.set("warm", 1)
    connects = []
    real_connect = sqlite3.connect

    def counting_connect(*args, **kwargs):
        connects.append(threading.current_thread().name)
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", counting_connect)

    def one_callback(n: int) -> None:          # like a FUSE callback: a new thread each time
        index.set(f"item\0{n}", {"n": n})
        assert index.get(f"item\0{n}") == {"n": n}
        index.touch(f"item\0{n}", {"n": n, "atime": 1})
        index.pop("nothing", None)

    for n in range(40):
        thread = threading.Thread(target=one_callback, args=(n,))
        thread.start()
        thread.join()
    index.close()
    assert connects == []


def test_changes_are_on_disk_when_the_call_returns(tmp_path):
    index = CacheIndex(tmp_path / "index")
    index.set("a", {"v": 1})
    index.set("gone", 2)
    index.pop("gone")
    with index.batch():
        index.set("b", [1, 2])
        index.set("c", 3)
    index.touch("a", {"v": 1, "atime": 5})
    # a second reader of the folder (like the next mount after a kill -9) sees the committed state
    other = diskcache.Cache(str(tmp_path / "index"))
    assert other.get("a") in ({"v": 1}, {"v": 1, "atime": 5})   # a touch is queued, not awaited
    assert other.get("b") == [1, 2] and other.get("c") == 3 and "gone" not in other
    index.close()                                                   # writes what is queued
    assert other.get("a") == {"v": 1, "atime": 5}
    other.close()
    again = CacheIndex(tmp_path / "index")
    assert again.get("a") == {"v": 1, "atime": 5} and again.items("") and "gone" not in again
    again.close()


def test_a_deferred_batch_never_overwrites_a_newer_change_of_another_thread(tmp_path):
    """The journal's reports of one batch write their records at its end; a write another thread
    made meanwhile (a new local change saying ``dirty``) stays what the disk holds."""
    index = CacheIndex(tmp_path / "index")
    index.set("item\0f", {"dirty": True, "version": 1})
    in_batch, other_done = threading.Event(), threading.Event()

    def journal_reports() -> None:
        with index.batch():
            index.set("item\0f", {"dirty": False, "version": 2})     # the upload committed
            index.set("item\0g", {"dirty": False, "version": 7})
            in_batch.set()
            other_done.wait(10)

    reporter = threading.Thread(target=journal_reports)
    reporter.start()
    in_batch.wait(10)
    index.set("item\0f", {"dirty": True, "version": 2})               # written again meanwhile
    other_done.set()
    reporter.join()
    index.close()
    disk = diskcache.Cache(str(tmp_path / "index"))
    assert disk.get("item\0f") == {"dirty": True, "version": 2}
    assert disk.get("item\0g") == {"dirty": False, "version": 7}
    disk.close()
