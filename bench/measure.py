"""Measuring helpers: page-cache control, timed reads, repetition under a budget, RSS sampling."""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, TypeVar

log = logging.getLogger(__name__)

MIB = 1 << 20
T = TypeVar("T")


class BenchError(RuntimeError):
    """The benchmark cannot go on (missing privilege, a process died, a check failed)."""


def drop_caches() -> None:
    """Write back dirty pages and empty the kernel page cache (needs root)."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        raise BenchError(f"cannot drop the page cache ({exc}); run the benchmark as root") from None


def read_file(path: Path | str, block_size: int = MIB) -> tuple[int, float]:
    """Read a whole file sequentially; return (bytes read, seconds until the first byte)."""
    buf = bytearray(block_size)
    view = memoryview(buf)
    total = 0
    start = time.perf_counter()
    first_byte = 0.0
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(view)
            if not n:
                break
            if not total:
                first_byte = time.perf_counter() - start
            total += n
    return total, first_byte


def repeat(run: Callable[[int], T], reps: int, budget_s: float) -> list[T]:
    """Call ``run(i)`` up to ``reps`` times; stop early once ``budget_s`` seconds have passed."""
    results: list[T] = []
    start = time.monotonic()
    for i in range(reps):
        results.append(run(i))
        if time.monotonic() - start > budget_s and i + 1 < reps:
            log.warning("stopping after %d of %d repetitions (budget of %.0f s used)", i + 1, reps, budget_s)
            break
    return results


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return found


def status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM, ...); 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class RssSampler:
    """Poll the memory of a process (and its children) in a thread until stopped.

    ``peak_hwm_mib`` is the kernel's high-water mark (VmHWM) of ``pid`` itself;
    ``peak_tree_rss_mib`` is the largest sampled sum of VmRSS over the process tree.
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_hwm_kib = 0
        self.peak_tree_rss_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        self.peak_hwm_kib = max(self.peak_hwm_kib, status_kib(self.pid, "VmHWM"))
        tree = sum(status_kib(p, "VmRSS") for p in process_tree(self.pid))
        self.peak_tree_rss_kib = max(self.peak_tree_rss_kib, tree)
        self.samples += 1

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    @property
    def peak_hwm_mib(self) -> float:
        return self.peak_hwm_kib / 1024

    @property
    def peak_tree_rss_mib(self) -> float:
        return self.peak_tree_rss_kib / 1024


class Stopwatch:
    """``with Stopwatch() as t: ...`` then ``t.seconds``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> "Stopwatch":
        self._start = time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process used so far (``/proc/<pid>/stat``; 0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """``with CpuMeter(server=pid, drive=pid) as cpu: ...`` then ``cpu.seconds`` = CPU seconds
    each process used meanwhile, plus ``client`` for this process (the reader or writer).

    On a machine with few cores the CPU all parties need, not only the wall time, tells
    how close a row can come to its baseline (see docs/performance.md).
    """

    def __init__(self, **pids: int) -> None:
        self.pids = pids
        self.seconds: dict[str, float] = {}
        self._start: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        times = os.times()
        return {"client": times.user + times.system,
                **{name: process_cpu_seconds(pid) for name, pid in self.pids.items()}}

    def __enter__(self) -> "CpuMeter":
        self._start = self._now()
        return self

    def __exit__(self, *_exc: object) -> None:
        end = self._now()
        self.seconds = {name: round(end[name] - self._start[name], 3) for name in end}


def mib_per_s(size: int, seconds: float) -> float:
    return size / MIB / seconds if seconds > 0 else float("inf")
