"""Run one journal in a process of its own, for kill -9 tests.

``python -m tests.durability.journal_child --server URL --user U --root DIR [--submit OID PATH FILE]
[--ops FILE] [--pause-at BYTES] --events FILE`` (password in ``OAIOFS_PASSWORD``). ``--ops``: one
JSON op per line (``Op`` fields, plus ``source``: the file a put_file sends), submitted in order.
Writes one JSON line per upload progress report to ``--events`` (``path``, ``offset``, ``size``,
``sent`` = bytes this process sent);
with ``--pause-at`` the upload stops for good once the server has that many bytes, so the test
can kill the process at a known point. Exits 0 once the journal is idle.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any, ContextManager

from oaiofs.client.api import ApiClient
from oaiofs.client.uploads import TusUploader
from oaiofs.hashing import file_sha256
from oaiofs.vfs.journal import Journal
from oaiofs.vfs.opstore import Op


class ReportingUploader:
    """A real TusUploader whose progress is logged (and optionally paused for good)."""

    def __init__(self, inner: TusUploader, events: Path, pause_at: int | None) -> None:
        self.inner, self.events, self.pause_at = inner, events, pause_at

    def upload_file(self, *args: Any, on_progress: Any = None, **kwargs: Any) -> dict[str, Any]:
        target = args[2] if len(args) > 2 else kwargs.get("path", "")

        def report(offset: int, size: int) -> None:
            with open(self.events, "a") as fh:
                fh.write(json.dumps({"path": target, "offset": offset, "size": size,
                                     "sent": self.inner.bytes_sent}) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            if on_progress is not None:
                on_progress(offset, size)
            if self.pause_at is not None and offset >= self.pause_at:
                threading.Event().wait()          # hold here until the test kills this process
        return self.inner.upload_file(*args, on_progress=report, **kwargs)


class _Unheard:
    """A journal listener that ignores the reports (this child only queues and uploads)."""

    def on_applied(self, op: Op, doc: Any) -> None: ...
    def on_conflict(self, op: Op, conflict_copy: str) -> None: ...
    def on_failed(self, op: Op, err: Exception) -> None: ...

    def reports(self) -> ContextManager[None]:
        return contextlib.nullcontext()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--submit", nargs=3, metavar=("OID", "PATH", "FILE"))
    parser.add_argument("--ops", type=Path)
    parser.add_argument("--pause-at", type=int)
    parser.add_argument("--chunk-size", type=int, default=4 * 1280 * 1024)
    parser.add_argument("--events", required=True, type=Path)
    args = parser.parse_args()
    api = ApiClient(args.server, args.user, os.environ["OAIOFS_PASSWORD"])
    uploader = ReportingUploader(TusUploader(api, chunk_size=args.chunk_size), args.events, args.pause_at)
    journal = Journal(args.root, api, uploader, origin=f"{args.user}@child",
                      listener=_Unheard(), backoff_initial_s=0.2, backoff_cap_s=1.0)
    if args.submit:
        oaio_id, path, source = args.submit
        journal.submit(Op("put_file", oaio_id, path, base_version=0), Path(source))
    for line in (args.ops.read_text().splitlines() if args.ops else []):
        fields = json.loads(line)
        source = fields.pop("source", None)
        if source:
            fields["sha256"] = file_sha256(Path(source))
        journal.submit(Op(**fields), Path(source) if source else None)
    journal.start()
    journal.wait_idle()
    failed = journal.status()["failed"]
    journal.close()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
