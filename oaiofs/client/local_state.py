"""The client's durable local state under ``client_root``, safe for several processes.

Layout::

  client_root/
    .lock                  fcntl.flock'ed while a process reads or changes the state
    objz/<oaio_id>.json    one JSON record per object (written atomically)
    filez/<oaio_id>/...    attached files of objects without a local root folder
    quarantine/            corrupt records moved aside (never deleted)
    staging/               downloads in progress
    state.json             sync bookkeeping (the change-feed cursor)
    last_sync_stamp.txt    stamp of the last error-free sync

Every write is temp file + fsync + rename (+ fsync of the folder); records that
only copy server data may skip the fsyncs and are flushed together (one
``os.sync``) before the lock is released or the sync cursor moves. A lock hold
that changed records rewrites ``objz/.generation`` before unlocking; the
outermost lock acquisition re-reads all records when that marker differs from
the one this instance wrote last, so a second process's changes are seen. A record that cannot be parsed is moved to
``quarantine/`` and reported through :meth:`LocalState.take_problems` instead of
breaking sync.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Iterator

from ..errors import InvalidValue
from ..protocol import OLDEST_SYNC_STAMP, is_stamp, now_stamp, validate_oaio_id
from .oaio_object import OaiObject

log = logging.getLogger(__name__)

LAST_SYNC_STAMP_FILE = "last_sync_stamp.txt"
LOCK_FILE = ".lock"
OBJECTS_DIR = "objz"
FILES_DIR = "filez"
QUARANTINE_DIR = "quarantine"
STAGING_DIR = "staging"
STATE_FILE = "state.json"
RECORD_SUFFIX = ".json"
GENERATION_FILE = ".generation"
TEMP_MARK = ".tmp-"


def fsync_dir(folder: Path) -> None:
    """fsync a folder so that a rename inside it is durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically: temp file in the same folder, fsync, rename.

    ``durable=False`` skips both fsyncs (the caller flushes later, see :meth:`LocalState.flush`).
    """
    tmp = path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        if durable:
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def atomic_write_json(path: Path, data: Any, durable: bool = True) -> None:
    """Write ``data`` as indented UTF-8 JSON with :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8"),
                       durable)


class LocalState:
    """Records of all local objects plus the sync bookkeeping, guarded by a lock file.

    Use ``with state.locked(): ...`` around every read-modify-write; the lock is
    re-entrant within a process (threads serialise on an ``RLock``) and exclusive
    between processes (``flock``).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.objects_dir = self.root / OBJECTS_DIR
        self.files_dir = self.root / FILES_DIR
        self.quarantine_dir = self.root / QUARANTINE_DIR
        self.staging_dir = self.root / STAGING_DIR
        for folder in (self.root, self.objects_dir, self.files_dir, self.quarantine_dir, self.staging_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._lock_fh: Any = None
        self._records: dict[str, OaiObject] = {}
        self._loaded = False
        self._generation = ""
        self._counter = 0
        self._changed = False        # records changed under the current lock: write the marker on release
        self._unflushed = False      # non-durable writes not yet flushed
        self._problems: list[str] = []
        with self.locked():
            if not (self.root / LAST_SYNC_STAMP_FILE).exists():
                atomic_write_bytes(self.root / LAST_SYNC_STAMP_FILE, OLDEST_SYNC_STAMP.encode("ascii"))

    # --- locking ---
    @contextlib.contextmanager
    def locked(self) -> Iterator["LocalState"]:
        """Hold the state lock (re-entrant); the outermost entry reloads changed records."""
        with self._thread_lock:
            self._depth += 1
            try:
                if self._depth == 1:
                    self._lock_fh = open(self.root / LOCK_FILE, "a+b")
                    fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_EX)
                    self._reload()
                yield self
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._release()

    def _release(self) -> None:
        try:
            self.flush()
            if self._changed:
                self._write_generation()
        finally:
            self._unlock()

    def _unlock(self) -> None:
        fh, self._lock_fh = self._lock_fh, None
        if fh is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()

    def _require_lock(self) -> None:
        if self._depth == 0:
            raise RuntimeError("LocalState used without holding its lock")

    # --- records ---
    def _record_path(self, oaio_id: str) -> Path:
        return self.objects_dir / (validate_oaio_id(oaio_id) + RECORD_SUFFIX)

    def _read_generation(self) -> str:
        try:
            return (self.objects_dir / GENERATION_FILE).read_text("ascii")
        except (OSError, UnicodeDecodeError):
            return ""

    def _write_generation(self) -> None:
        """Tell other processes that records changed (a counter plus our pid, written under the lock)."""
        self._changed = False
        self._counter += 1
        self._generation = f"{os.getpid()}-{id(self)}-{self._counter}"
        (self.objects_dir / GENERATION_FILE).write_text(self._generation, "ascii")

    def _reload(self) -> None:
        """Re-read all records if another process (or instance) changed them since we last looked."""
        generation = self._read_generation()
        if self._loaded and generation == self._generation:
            return
        records: dict[str, OaiObject] = {}
        for entry in os.scandir(self.objects_dir):
            if entry.name == GENERATION_FILE or not entry.is_file(follow_symlinks=False):
                continue
            if entry.name.startswith(".") and TEMP_MARK in entry.name and not entry.name.endswith(RECORD_SUFFIX):
                os.unlink(entry.path)        # left by a writer that died: writes happen only under the lock
                continue
            try:
                if not entry.name.endswith(RECORD_SUFFIX):
                    raise InvalidValue("not a record file name")
                obj = OaiObject.from_json(json.loads(Path(entry.path).read_text("utf-8")))
                if obj.oaio_id + RECORD_SUFFIX != entry.name:
                    raise InvalidValue("record file name does not match its oaio_id")
            except (ValueError, OSError, InvalidValue) as exc:   # bad JSON, bad UTF-8, bad record
                self._quarantine(Path(entry.path), exc)
                continue
            records[obj.oaio_id] = obj
        self._records = records
        self._generation = generation
        self._loaded = True

    def _quarantine(self, path: Path, exc: BaseException) -> None:
        target = self.quarantine_dir / f"{path.name}.{now_stamp()}"
        try:
            os.replace(path, target)
            fsync_dir(self.objects_dir)
        except OSError as move_exc:
            log.error("cannot quarantine corrupt record %s: %s", path, move_exc)
        problem = f"corrupt local record {path.name!r} moved to {target}: {exc}"
        log.error("%s", problem)
        self._problems.append(problem)
        self.write_state(cursor=None)      # the next sync must list everything to restore the object

    def take_problems(self) -> list[str]:
        """The corrupt-record reports collected since the last call (then cleared)."""
        problems, self._problems = self._problems, []
        return problems

    @property
    def objects(self) -> dict[str, OaiObject]:
        """All local records by id (the live mapping; change it only through :meth:`save`/:meth:`remove`)."""
        return self._records

    def get(self, oaio_id: str) -> OaiObject | None:
        """The record of ``oaio_id`` or None."""
        return self._records.get(oaio_id)

    def save(self, obj: OaiObject, durable: bool = True) -> None:
        """Write ``obj``'s record atomically (lock required).

        ``durable=False`` (for copies of server data, which can be fetched again) leaves
        the fsync to :meth:`flush`, which runs before the lock is released.
        """
        self._require_lock()
        path = self._record_path(obj.oaio_id)
        atomic_write_json(path, obj.to_json(), durable)
        self._unflushed = self._unflushed or not durable
        self._records[obj.oaio_id] = obj
        self._changed = True

    def discard_changes(self, oaio_id: str) -> None:
        """Forget unsaved in-memory changes of ``oaio_id``: re-read its record (lock required)."""
        self._require_lock()
        path = self._record_path(oaio_id)
        try:
            self._records[oaio_id] = OaiObject.from_json(json.loads(path.read_text("utf-8")))
        except FileNotFoundError:
            self._records.pop(oaio_id, None)
        except (ValueError, OSError, InvalidValue) as exc:
            self._records.pop(oaio_id, None)
            self._quarantine(path, exc)

    def remove(self, oaio_id: str) -> None:
        """Forget ``oaio_id``'s record (lock required); attached files are not touched."""
        self._require_lock()
        path = self._record_path(oaio_id)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            fsync_dir(self.objects_dir)
        self._records.pop(oaio_id, None)
        self._changed = True

    def object_files_dir(self, oaio_id: str) -> Path:
        """``client_root/filez/<oaio_id>``: the home of files of objects without a local root."""
        return self.files_dir / validate_oaio_id(oaio_id)

    def wipe_object_files(self, oaio_id: str) -> None:
        """Delete ``client_root/filez/<oaio_id>`` (never anything outside ``client_root``)."""
        shutil.rmtree(self.object_files_dir(oaio_id), ignore_errors=True)

    # --- sync bookkeeping ---
    @property
    def last_sync_stamp(self) -> str:
        """Stamp of the last error-free sync (``OLDEST_SYNC_STAMP`` before the first)."""
        try:
            stamp = (self.root / LAST_SYNC_STAMP_FILE).read_text("ascii").strip()
        except (OSError, UnicodeDecodeError):
            return OLDEST_SYNC_STAMP
        return stamp if is_stamp(stamp) else OLDEST_SYNC_STAMP

    @last_sync_stamp.setter
    def last_sync_stamp(self, stamp: str) -> None:
        if not is_stamp(stamp):
            raise InvalidValue("last sync stamp must be a 20-digit stamp", {"stamp": str(stamp)[:40]})
        atomic_write_bytes(self.root / LAST_SYNC_STAMP_FILE, stamp.encode("ascii"))

    def read_state(self) -> dict[str, Any]:
        """The ``state.json`` dict ({} if missing or unreadable)."""
        try:
            data = json.loads((self.root / STATE_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def flush(self) -> None:
        """Make every non-durable write durable (one ``os.sync`` instead of two fsyncs per record)."""
        if self._unflushed:
            os.sync()
            self._unflushed = False

    def write_state(self, **changes: Any) -> None:
        """Update keys of ``state.json`` atomically (lock required); earlier record writes are flushed first."""
        self._require_lock()
        self.flush()
        data = self.read_state()
        if (self.root / STATE_FILE).exists() and all(data.get(k) == v for k, v in changes.items()):
            return                          # unchanged: spare the fsyncs
        data.update(changes)
        atomic_write_json(self.root / STATE_FILE, data)
