"""The journal's on-disk state: pending operations, conflict records and their bytes.

Why SQLite (stdlib ``sqlite3``, WAL, ``synchronous=FULL``) rather than JSON files:
one ``COMMIT`` makes an op record durable atomically (no temp-file/rename/dir-fsync
dance per record), updates of the upload offset are cheap row updates, ordering comes
from the ``INTEGER PRIMARY KEY AUTOINCREMENT`` id, and ``oaiofs status`` can read the
queue from another process while the mount writes it (WAL readers never block the
writer). Each ``put_file`` snapshot is a hard link (``os.link``, O(1) whatever the size) in
``<root>/data/``. A large one is fsync'd together with its directory entry before the
record that names it is committed. A small one (``INLINE_MAX_BYTES``) is not: its bytes go
into the record's ``data`` column instead, so the one ``COMMIT`` makes bytes and record
durable (one fsync per close instead of three), and :meth:`OpStore.restore_snapshots`
rewrites a snapshot a power cut damaged from them at the next start.

Layout of ``root``::

    journal.db          ops(id, oaio_id, state, created, doc JSON, data: a small snapshot's bytes),
                        conflicts(...), meta(key, value)
    data/<uuid>         immutable snapshot of the bytes of one put_file op
    journal.lock        flock'd by the running journal (one process per root)

Thread safety: every method takes the store's own lock; nothing here touches the network.
"""
from __future__ import annotations

import dataclasses
import hashlib
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
INLINE_MAX_BYTES = 64 << 10     # snapshots up to this size are made durable by their record's COMMIT
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
        if "data" not in {row[1] for row in self._db.execute("PRAGMA table_info(ops)")}:
            self._db.execute("ALTER TABLE ops ADD COLUMN data BLOB")      # journals of older versions
        for folder in (self.root.parent, self.root, self.data_dir):   # new folders and files survive a power cut
            _fsync_dir(folder)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- snapshots -------------------------------------------------------------------
    def snapshot(self, source: Path) -> tuple[Path, bytes | None]:
        """Make ``source``'s bytes the journal's own: hard link (copy if linking fails). A large
        snapshot is durable when this returns; a small one comes back with its bytes, which
        :meth:`insert` stores in the record (durable with it, see the module doc)."""
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
            if os.fstat(fd).st_size <= INLINE_MAX_BYTES:
                data = os.read(fd, INLINE_MAX_BYTES + 1)
                if len(data) <= INLINE_MAX_BYTES:
                    return target, data
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(self.data_dir)
        return target, None

    def restore_snapshots(self, ops: list[Op]) -> list[Op]:
        """Start-up: rewrite the snapshot of each small ``put_file`` op that a power cut damaged
        before the kernel wrote it back (:func:`_cut_short`) from the op's record; the rewrite goes
        into the same inode when the file is there, so the drive's cache file that shares it is
        repaired too. Returns the ops whose snapshot was rewritten."""
        restored = []
        for op in ops:
            if op.kind != "put_file" or not op.data_file or not op.sha256 or op.size > INLINE_MAX_BYTES:
                continue
            path = Path(op.data_file)
            if not _cut_short(path, op.size, op.sha256):
                continue
            with self._lock:
                row = self._db.execute("SELECT data FROM ops WHERE id = ?", (op.id,)).fetchone()
            data = row[0] if row is not None else None
            if data is None or hashlib.sha256(data).hexdigest() != op.sha256:
                log.error("op %d (%s/%s): its snapshot %s is damaged and the journal has no copy of its bytes",
                          op.id, op.oaio_id, op.path, path)
                continue
            log.warning("op %d (%s/%s): snapshot %s lost its bytes (power cut?); rewriting it from the journal",
                        op.id, op.oaio_id, op.path, path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            restored.append(op)
        if restored:
            _fsync_dir(self.data_dir)
        return restored

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
    def insert(self, op: Op, data: bytes | None = None) -> Op:
        """Persist a new op (durable when this returns; ``data``: its small snapshot's bytes, see
        :meth:`snapshot`) and set its id."""
        op.created = op.created or time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute("INSERT INTO ops (oaio_id, state, created, doc, data) VALUES (?, ?, ?, ?, ?)",
                                       (op.oaio_id, op.state, op.created, "{}", data))
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


def _cut_short(path: Path, size: int, sha256: str) -> bool:
    """What a power cut leaves of a file written but not fsync'd: no file, a shorter one, or one
    of the right size that reads as zeros. (Other bytes are no power cut: a writer changed the
    snapshot, and the applier uploads what is there now, see ``OpApplier._check_snapshot_unchanged``.)"""
    try:
        found = path.stat().st_size
    except FileNotFoundError:
        return True
    if found != size:
        return found < size
    data = path.read_bytes()
    return not any(data) and hashlib.sha256(data).hexdigest() != sha256   # hashed only if all zeros


def _fsync_dir(path: Path) -> None:
    """Make the directory entries in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
