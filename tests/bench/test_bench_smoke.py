"""The benchmark suite cannot rot: a ``--quick`` run (tiny sizes) must produce every row.

Nothing here asserts speed: the smoke run checks that each row was measured with
positive numbers on both sides, and that the harness leaves no mount or process
behind, also when it is interrupted.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.measure import BenchError
from bench.payload import Payload
from bench.processes import Watchdog
from bench.report import Row, Target, markdown_table
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]

BENCH = ROOT / "scripts" / "bench"
ROW_KEYS = ["cold_read", "warm_read", "cat_small", "ls_cold", "ls_warm", "write_commit", "peak_rss", "many_commit", "many_local",
            "create_latency", "clone_local", "clone_commit", "clone_floor"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the benchmark drops the page cache (root only)")
needs_fuse = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse")


def mounts_under(folder: Path) -> list[str]:
    """Mount points below ``folder`` according to /proc/mounts."""
    prefix = str(folder)
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(prefix)]


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (the run's scratch folder)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def run_bench(*args: str, timeout: float = 540) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=timeout)


# --- unit tests of the report arithmetic (no processes) ---------------------------------------
def test_ratio_is_a_speed_ratio_for_both_kinds_of_unit() -> None:
    throughput = Row("t", "read", "GET", "MiB/s", True, Target("min_ratio", 0.8, "≥ 0.8×"),
                     samples=[90.0, 80.0, 100.0], baseline_samples=[100.0])
    duration = Row("d", "ls", "call", "s", False, Target("min_ratio", 1 / 3, "≤ 3×"),
                   samples=[0.4], baseline_samples=[0.1])
    assert throughput.value == 90.0 and throughput.ratio == pytest.approx(0.9) and throughput.passed
    assert duration.ratio == pytest.approx(0.25) and not duration.passed


def test_max_value_target_and_errors_in_the_table() -> None:
    rss = Row("m", "rss", "", "MiB", False, Target("max_value", 150.0, "≤ 150 MiB"), samples=[120.0])
    broken = Row("b", "cat", "GETs", "s", False, Target("min_ratio", 1.0, "≥ 1×"), error="BenchError: boom")
    table = markdown_table([rss, broken])
    assert rss.ratio is None and rss.passed and not broken.passed
    assert "| rss | 120.0 MiB | — | — | ≤ 150 MiB | PASS |" in table
    assert "ERROR: BenchError: boom" in table


def test_payload_reader_streams_exactly_the_payload() -> None:
    payload = Payload(3 * (1 << 20) + 5, "unit")
    reader = payload.reader()
    assert len(reader) == payload.size
    pieces = []
    while piece := reader.read(100_000):
        pieces.append(piece)
    assert b"".join(pieces) == payload.to_bytes()
    assert Payload(1 << 20, "a").to_bytes() != Payload(1 << 20, "b").to_bytes()


class _FakeDrive:
    """Stands in for a MountHandle: records that the watchdog killed it."""

    pid = -1
    killed = False

    def kill(self) -> None:
        self.killed = True


def test_watchdog_kills_a_stuck_drive_and_reports_a_timeout() -> None:
    drive = _FakeDrive()
    with pytest.raises(BenchError, match="the drive was killed"):
        with Watchdog(drive, 0.01) as watchdog:   # type: ignore[arg-type]
            wait_until(lambda: watchdog.fired, timeout=10, message="the watchdog")
    assert drive.killed
    calm = _FakeDrive()
    with Watchdog(calm, 60):                      # type: ignore[arg-type]
        pass
    assert not calm.killed


# --- the real thing, at tiny sizes --------------------------------------------------------------
@pytest.mark.fuse
@needs_root
@needs_fuse
def test_quick_run_measures_every_row(tmp_path: Path) -> None:
    out, work = tmp_path / "bench.json", tmp_path / "work"
    result = run_bench("--quick", "--json", str(out), "--work-dir", str(work))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    data = json.loads(out.read_text())
    assert [row["key"] for row in data["rows"]] == ROW_KEYS
    for row in data["rows"]:
        assert row["error"] is None, row
        assert row["samples"] and all(s > 0 for s in row["samples"]), row
        if row["baseline_label"]:
            assert row["baseline_samples"] and all(s > 0 for s in row["baseline_samples"]), row
            assert row["ratio"] > 0, row
        assert isinstance(row["passed"], bool)
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == len(ROW_KEYS) + 1                          # header + one line per row
    rows = {row["key"]: row for row in data["rows"]}
    for key in ("cold_read", "write_commit"):                       # CPU of every party, both sides
        detail = rows[key]["detail"]
        assert len(detail["cpu_s"]) == len(rows[key]["samples"]) and len(detail["baseline_cpu_s"]) >= 1, detail
        assert all(set(s) == {"drive", "server", "client"} and min(s.values()) >= 0 for s in detail["cpu_s"])
        assert all(set(s) == {"server", "client"} for s in detail["baseline_cpu_s"])
        assert sum(sum(s.values()) for s in detail["cpu_s"]) > 0
    assert "CPU seconds per sample" in result.stdout
    assert mounts_under(work) == []
    assert processes_mentioning(str(work)) == []


@needs_root
def test_baselines_only_run_needs_no_drive(tmp_path: Path) -> None:
    out, work = tmp_path / "bench.json", tmp_path / "work"
    result = run_bench("--quick", "--baselines-only", "--json", str(out), "--work-dir", str(work))
    assert result.returncode == 1, result.stderr[-4000:]          # rows without a drive are errors
    rows = json.loads(out.read_text())["rows"]
    assert [row["key"] for row in rows] == ROW_KEYS
    for row in rows:
        assert row["error"] == "drive not measured (--baselines-only)"
        if row["baseline_label"]:
            assert row["baseline_samples"] and all(s > 0 for s in row["baseline_samples"]), row
    assert processes_mentioning(str(work)) == []


@pytest.mark.fuse
@needs_root
@needs_fuse
def test_interrupt_unmounts_and_stops_everything(tmp_path: Path) -> None:
    work = tmp_path / "work"
    proc = subprocess.Popen([sys.executable, str(BENCH), "--quick", "--json", str(tmp_path / "b.json"),
                             "--work-dir", str(work)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: mounts_under(work) or proc.poll() is not None, timeout=120, message="a drive mount")
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        proc.send_signal(signal.SIGINT)
        _stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr[-3000:]
    assert mounts_under(work) == []
    assert processes_mentioning(str(work)) == []
