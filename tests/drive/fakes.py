"""In-memory stand-ins for unit tests of the drive's layers (never the only proof: see test_mount_*)."""
from __future__ import annotations

import contextlib
import dataclasses
import threading
from pathlib import Path
from typing import Any, Iterator

from oaiofs.errors import Unavailable
from oaiofs.vfs.opstore import Op


class FakeSource:
    """A ByteSource over a dict; ``gate`` (an Event) lets a test hold streams after the first chunk."""

    def __init__(self, files: dict[tuple[str, str], bytes], chunk: int = 64 * 1024) -> None:
        self.files = files
        self.chunk = chunk
        self.ranges: list[tuple[str, int, int]] = []
        self.batches: list[list[tuple[str, str]]] = []
        self.gate: threading.Event | None = None
        self.offline = False

    @contextlib.contextmanager
    def open_range(self, oaio_id: str, path: str, version: int, sha256: str | None, start: int,
                   end: int) -> Iterator[Iterator[bytes]]:
        if self.offline:
            raise Unavailable("offline")
        self.ranges.append((path, start, end))
        data = self.files[(oaio_id, path)][start:end]

        def chunks() -> Iterator[bytes]:
            for i in range(0, len(data), self.chunk):
                if i and self.gate is not None:
                    self.gate.wait(10)
                yield data[i:i + self.chunk]
        yield chunks()

    def fetch_batch(self, files: list[Any], dest_dir: Path) -> dict[tuple[str, str], Path]:
        if self.offline:
            raise Unavailable("offline")
        self.batches.append([c.key for c in files])
        out = {}
        for i, cand in enumerate(files):
            target = dest_dir / f"b{i}"
            target.write_bytes(self.files[cand.key])
            out[cand.key] = target
        return out


class FakeJournal:
    """Records submitted ops (snapshotting put_file bytes) and applies nothing until told."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.ops: list[Op] = []
        self._next = 1

    def submit(self, op: Op, data_source: Path | None = None, stream: object = None) -> Op:
        op = dataclasses.replace(op, id=self._next, state="pending")
        self._next += 1
        if op.kind == "put_file":
            assert data_source is not None
            target = self.root / f"op{op.id}"
            target.hardlink_to(data_source)
            op.data_file = str(target)
            op.size = target.stat().st_size
        self.ops.append(op)
        return op

    def wait(self, op: Op, timeout: float | None = None) -> Op:
        return op

    def pending(self, oaio_id: str | None = None) -> list[Op]:
        return [dataclasses.replace(o) for o in self.ops
                if o.state != "done" and (oaio_id is None or o.oaio_id == oaio_id)]

    def status(self) -> dict[str, Any]:
        return {"online": True, "ops": [o.summary() for o in self.pending()], "conflicts": [], "failed": []}

    def amend_meta(self, op_id: int, mode: int | None, mtime_ns: int | None) -> bool:
        return False                     # never folds: every chmod/utimens stays an op of its own

    def finish(self, op: Op) -> None:
        for o in self.ops:
            if o.id == op.id:
                o.state = "done"


def object_doc(oaio_id: str, name: str | None, files: dict[str, bytes], right: str = "C",
               version: int = 1, created: str = "2026-01-01T00:00:00+00:00") -> dict[str, Any]:
    """An ObjectDoc as the server would list it."""
    import hashlib

    values = {"_name": name} if name else {}
    return {"oaio_id": oaio_id, "owner": "me", "values": values, "version": version, "stamp": "",
            "created": created, "updated": created, "deleted": None, "access_right": right,
            "app_id": "", "device_id": "",
            "files": [{"path": p, "kind": "file", "size": len(b), "sha256": hashlib.sha256(b).hexdigest(),
                       "version": version, "stamp": "", "mtime": 1.0e9} for p, b in files.items()]}
