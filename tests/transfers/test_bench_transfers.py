"""bench/transfers.py cannot rot: a tiny run must measure every row on both sides (no speed asserted)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_neutral     # docs/testing.md: not rerun on PostgreSQL + S3

ROOT = Path(__file__).resolve().parents[2]


def test_transfer_benchmark_smoke(tmp_path: Path):
    out = tmp_path / "transfers.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "transfers.py"), "--size-mib", "2",
                             "--reps", "1", "--json", str(out), "--work", str(tmp_path / "work")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert {row["key"] for row in report["rows"]} == {"upload", "download"}
    for row in report["rows"]:
        assert row["value"] > 0 and row["baseline"] > 0 and row["ratio"] > 0, row
    assert "TusUploader" in result.stdout and "plain GET" in result.stdout
