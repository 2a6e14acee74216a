"""The journal's on-disk state: pending operations, conflict records and their bytes.

Why SQLite (stdlib ``sqlite3``, WAL, ``synchronous=FULL``) rather than JSON files:
one ``COMMIT`` makes an op record durable atomically (no temp-file/rename/dir-fsync
dance per record), updates of the upload offset are cheap row updates, ordering comes
from the ``INTEGER PRIMARY KEY AUTOINCREMENT`` id, and ``oaiofs status`` can read the
queue from another process while the mount writes it (WAL readers never block the
writer). Bytes do not go into the database: each ``put_file`` snapshot is a hard link
(``os.link``, O(1) whatever the size) in ``<root>/data/``, fsync'd together with its
directory entry before the record that names it is committed.

Layout of ``root``::

    journal.db          ops(id, oaio_id, state, created, doc JSON), conflicts(...), meta(key, value)
    data/<uuid>         immutable snapshot of the bytes of one put_file op
    journal.lock        flock'd by the running journal (one process per root)

Thread safety: every method takes the store's own lock; nothing here touches the network.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OP_KINDS = ("create_object", "put_values", "put_file", "mkdir", "delete_path", "move", "delete_object",
            "set_meta", "symlink")
ACTIVE_STATES = ("pending", "running")
TERMINAL_STATES = ("done", "failed", "conflict")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ops (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    oaio_id TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_ops_oaio_id ON ops (oaio_id, id);
CREATE TABLE IF NOT EXISTS conflicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    op_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    oaio_id TEXT NOT NULL,
    path TEXT NOT NULL,
    conflict_path TEXT NOT NULL,
    detail TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class Op:
    """One mutating operation waiting to be applied to the server (see docs/durability.md)."""

    kind: str
    oaio_id: str
    path: str = ""
    dst: str = ""
    size: int = 0
    sha256: str | None = None
    mtime: float | None = None
    base_version: int | None = None
    values: dict[str, Any] | None = None
    base_values: dict[str, Any] | None = None
    # filled in by the journal
    id: int = 0
    state: str = "pending"
    data_file: str | None = None
    upload_url: str | None = None
    offset: int = 0
    attempts: int = 0
    error: str = ""
    result_version: int | None = None
    created: float = 0.0
    conflict_path: str = ""          # set once a conflict copy is being written
    mode: int | None = None          # put_file/set_meta/mkdir: permission bits (None: keep/default)
    mtime_ns: int | None = None      # put_file/set_meta/symlink: exact mtime (None: op.mtime / keep)
    target: str | None = None        # symlink: the link's target
    parent_sha256: str | None = None  # put_file: this history's bytes before this snapshot (apply.py)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Op":
        raw = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

    def summary(self) -> dict[str, Any]:
        """The fields ``status()`` shows."""
        return {"id": self.id, "kind": self.kind, "oaio_id": self.oaio_id, "path": self.path,
                "dst": self.dst, "state": self.state, "offset": self.offset, "size": self.size,
                "attempts": self.attempts, "error": self.error, "conflict_path": self.conflict_path,
                "upload_url": self.upload_url}


class OpStore:
    """SQLite-backed persistence of ops and conflicts, plus the snapshot folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.data_dir = self.root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / "journal.db", check_same_thread=False,
                                   isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        for folder in (self.root.parent, self.root, self.data_dir):   # new folders and files survive a power cut
            _fsync_dir(folder)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- snapshots -------------------------------------------------------------------
    def snapshot(self, source: Path) -> Path:
        """Make ``source``'s bytes the journal's own and durable: hard link (copy if linking fails)."""
        target = self.data_dir / uuid.uuid4().hex
        try:
            os.link(source, target)
        except OSError as exc:
            log.debug("%s: cannot hard-link into the journal (%s); copying", source, exc)
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(self.data_dir)
        return target

    def remove_data(self, data_file: str | None) -> None:
        """Delete a snapshot that is no longer needed."""
        if data_file:
            try:
                os.unlink(data_file)
            except FileNotFoundError:
                pass

    def remove_orphans(self) -> int:
        """Delete snapshots no op names (left by a crash between link and commit)."""
        with self._lock:
            used = {Op.from_json(doc).data_file for (doc,) in self._db.execute("SELECT doc FROM ops")}
        removed = 0
        for entry in self.data_dir.iterdir():
            if str(entry) not in used:
                entry.unlink(missing_ok=True)
                removed += 1
        return removed

    # --- ops -------------------------------------------------------------------------
    def insert(self, op: Op) -> Op:
        """Persist a new op (durable when this returns) and set its id."""
        op.created = op.created or time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute("INSERT INTO ops (oaio_id, state, created, doc) VALUES (?, ?, ?, ?)",
                                       (op.oaio_id, op.state, op.created, "{}"))
                op.id = int(cur.lastrowid or 0)
                self._db.execute("UPDATE ops SET doc = ? WHERE id = ?", (op.to_json(), op.id))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return op

    def update(self, op: Op) -> None:
        """Persist the op's current fields."""
        with self._lock:
            self._db.execute("UPDATE ops SET state = ?, doc = ? WHERE id = ?", (op.state, op.to_json(), op.id))

    def delete(self, op: Op) -> None:
        """Forget an op that is fully applied."""
        with self._lock:
            self._db.execute("DELETE FROM ops WHERE id = ?", (op.id,))

    def delete_many(self, ops: list[Op]) -> None:
        """Forget several fully applied ops in one transaction."""
        if not ops:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM ops WHERE id = ?", [(op.id,) for op in ops])
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def load(self) -> list[Op]:
        """Every stored op in submit order."""
        with self._lock:
            rows = self._db.execute("SELECT doc FROM ops ORDER BY id").fetchall()
        return [Op.from_json(doc) for (doc,) in rows]

    # --- conflicts and meta ----------------------------------------------------------
    def add_conflict(self, op: Op, conflict_path: str, detail: dict[str, Any]) -> None:
        """Record that ``op`` was resolved by keeping a conflict copy."""
        with self._lock:
            self._db.execute(
                "INSERT INTO conflicts (op_id, kind, oaio_id, path, conflict_path, detail, time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (op.id, op.kind, op.oaio_id, op.path, conflict_path, json.dumps(detail), time.time()))

    def conflicts(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent conflict records, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT op_id, kind, oaio_id, path, conflict_path, detail, time"
                                    " FROM conflicts ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [{"op_id": r[0], "kind": r[1], "oaio_id": r[2], "path": r[3], "conflict_path": r[4],
                 "detail": json.loads(r[5]), "time": r[6]} for r in rows]

    def clear_conflicts(self) -> int:
        """Forget every conflict record (the copies themselves stay); returns how many."""
        with self._lock:
            return self._db.execute("DELETE FROM conflicts").rowcount or 0

    def set_meta(self, key: str, value: Any) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default


def _fsync_dir(path: Path) -> None:
    """Make the directory entries in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
