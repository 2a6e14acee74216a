"""Optional py-spy profiles of the drive process during the measured part of a workload."""
from __future__ import annotations

import collections
import logging
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from .measure import BenchError

log = logging.getLogger(__name__)

_LINE_NO = re.compile(r":\d+\)$")


class PySpyRecorder:
    """``py-spy record --format raw`` attached to ``pid`` until :meth:`stop` (use as a context manager)."""

    def __init__(self, pid: int, output: Path, *, rate: int = 200, idle: bool = False) -> None:
        exe = shutil.which("py-spy")
        if exe is None:
            raise BenchError("py-spy is not installed (pip install py-spy)")
        self.output = output
        self._cmd = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                     "--output", str(output), "--nonblocking"]
        if idle:
            self._cmd.append("--idle")
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []
        self._sampling = threading.Event()

    def _drain(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:          # py-spy reports on stdout, errors on stderr (merged)
            self._stderr.append(line)
            if "Sampling process" in line:
                self._sampling.set()

    def __enter__(self) -> "PySpyRecorder":
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(self._cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + 10
        while not self._sampling.wait(0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log.warning("py-spy did not start: %s", "".join(self._stderr)[-500:])
                break
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


def _function(frame: str) -> str:
    """``read (oaiofs/vfs/x.py:12)`` -> ``read (oaiofs/vfs/x.py)``."""
    return _LINE_NO.sub(")", frame.strip())


def summarize_raw(path: Path, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Top functions of a py-spy raw profile by inclusive and by self share of all samples."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if f]
        total += count
        for name in set(frames):
            inclusive[name] += count
        if frames:
            own[frames[-1]] += count
    if not total:
        return {"inclusive": [], "self": [], "samples": []}

    def share(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(count / total, 4)) for name, count in counter.most_common(top)]

    return {"inclusive": share(inclusive), "self": share(own), "samples": [("total", float(total))]}


def format_summary(summary: dict[str, list[tuple[str, float]]]) -> str:
    """A plain-text rendering of :func:`summarize_raw`."""
    lines = []
    for kind in ("inclusive", "self"):
        lines.append(f"top functions by {kind} share of samples:")
        lines.extend(f"  {share * 100:5.1f}%  {name}" for name, share in summary.get(kind, []))
    return "\n".join(lines)
