"""``python -m bench.load`` cannot rot: a tiny run prints a row per client count and meets the no-error target."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_load_benchmark_quick_run_prints_every_row() -> None:
    run = subprocess.run([sys.executable, "-m", "bench.load", "--clients", "2,6", "--duration", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| sqlite |")]
    assert [int(row.split("|")[2]) for row in rows] == [2, 6]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[2]) > 0                                  # req/s
        assert cells[5:9] == ["0", "0", "0", "0"]                   # errors, busy, resets, unanswered
        assert float(cells[9]) > 0                                  # server RSS
