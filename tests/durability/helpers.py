"""Small helpers shared by the durability tests."""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any, Iterator

from oaiofs.vfs.opstore import Op


class Recorder:
    """Collects the journal's reports (a ``JournalListener``)."""

    def __init__(self) -> None:
        self.applied: list[tuple[Op, Any]] = []
        self.conflicts: list[tuple[Op, str]] = []
        self.failed: list[tuple[Op, Exception]] = []
        self.report_groups = 0

    def on_applied(self, op: Op, doc: Any) -> None:
        self.applied.append((op, doc))

    def on_conflict(self, op: Op, conflict_copy: str) -> None:
        self.conflicts.append((op, conflict_copy))

    def on_failed(self, op: Op, err: Exception) -> None:
        self.failed.append((op, err))

    @contextlib.contextmanager
    def reports(self) -> Iterator[None]:
        """Counts the batches whose reports came inside one ``reports`` context."""
        self.report_groups += 1
        yield

    def kwargs(self) -> dict[str, Any]:
        return {"listener": self}


def write_random(path: Path, size: int, block: int = 1 << 20) -> str:
    """Fill ``path`` with ``size`` random bytes; return their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(block, left))
            digest.update(chunk)
            fh.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def server_uploads(server: Any, oaio_id: str, path: str) -> list[dict[str, Any]]:
    """The tus uploads the server recorded for one file (read from its database): what it received."""
    from sqlalchemy import create_engine, select
    from oaiofs.server.models import Upload

    url = f"sqlite:///{server.data_dir / 'oaiofs.db'}"
    args = list(server.extra_args)
    for i, arg in enumerate(args):
        if arg == "--db" and i + 1 < len(args):
            url = args[i + 1]
        elif arg.startswith("--db="):
            url = arg.split("=", 1)[1]
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Upload.id, Upload.offset, Upload.segments, Upload.completed)
                                .where(Upload.oaio_id == oaio_id, Upload.path == path)).all()
    finally:
        engine.dispose()
    return [{"id": r[0], "offset": r[1], "segments": r[2], "completed": r[3] is not None} for r in rows]
