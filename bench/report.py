"""Benchmark rows, pass/fail against their targets, the markdown table and the JSON file."""
from __future__ import annotations

import dataclasses
import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Target:
    """A row's goal: ``ratio ≥ threshold`` (kind ``min_ratio``) or ``value ≤ threshold`` (``max_value``)."""

    kind: str
    threshold: float
    text: str

    def met(self, value: float | None, ratio: float | None) -> bool:
        """True if the measured ``value``/``ratio`` reaches the goal."""
        if self.kind == "min_ratio":
            return ratio is not None and ratio >= self.threshold
        if self.kind == "max_value":
            return value is not None and value <= self.threshold
        raise ValueError(f"unknown target kind {self.kind!r}")


@dataclass
class Row:
    """One workload beside its baseline. ``samples`` are in ``unit``; the row value is their median.

    ``higher_is_better`` says how to read the unit (MiB/s: yes, seconds: no); ``ratio`` is
    always a speed ratio (mount over baseline, > 1 means the mount is faster).
    """

    key: str
    workload: str
    baseline_label: str
    unit: str
    higher_is_better: bool
    target: Target
    samples: list[float] = field(default_factory=list)
    baseline_samples: list[float] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def value(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def baseline(self) -> float | None:
        return statistics.median(self.baseline_samples) if self.baseline_samples else None

    @property
    def ratio(self) -> float | None:
        value, baseline = self.value, self.baseline
        if value is None or baseline is None or value <= 0 or baseline <= 0:
            return None
        return value / baseline if self.higher_is_better else baseline / value

    @property
    def passed(self) -> bool:
        return self.error is None and self.target.met(self.value, self.ratio)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(value=self.value, baseline=self.baseline, ratio=self.ratio, passed=self.passed,
                    target=dataclasses.asdict(self.target))
        return data


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:,.1f} {unit}"


def _cell(text: str, limit: int = 160) -> str:
    """One table cell: a single line, no pipe characters, at most ``limit`` characters."""
    line = " ".join(text.split())
    line = line if len(line) <= limit else line[:limit - 1] + "…"
    return line.replace("|", "\\|")


def markdown_table(rows: list[Row], value_header: str = "oaiofs mount") -> str:
    """The result table: workload, measured value, baseline, speed ratio, target, pass/fail."""
    lines = [f"| workload | {value_header} | baseline (same run) | ratio | target | result |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        baseline = f"{_number(row.baseline, row.unit)} ({row.baseline_label})" if row.baseline_label else "—"
        ratio = f"{row.ratio:.2f}×" if row.ratio is not None else "—"
        result = "PASS" if row.passed else ("ERROR: " + _cell(row.error) if row.error else "FAIL")
        lines.append(f"| {row.workload} | {_number(row.value, row.unit)} | {baseline} | {ratio} "
                     f"| {row.target.text} | {result} |")
    return "\n".join(lines)


def write_json(path: Path, rows: list[Row], meta: dict[str, Any]) -> None:
    """Write the run (``meta`` plus every row with its samples) as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "rows": [row.to_json() for row in rows]}, indent=2) + "\n")


def cpu_summary(rows: list[Row]) -> str:
    """Median CPU seconds per sample of each party, mount side and baseline side, for the rows
    that recorded them (``detail["cpu_s"]`` / ``detail["baseline_cpu_s"]``); empty if none did."""
    lines = []
    for row in rows:
        sides = [(label, row.detail.get(key)) for label, key in (("mount", "cpu_s"), ("baseline", "baseline_cpu_s"))]
        parts = [f"{label} {_cpu_text(samples)}" for label, samples in sides if samples]
        if parts:
            lines.append(f"- {row.workload}: " + "; ".join(parts))
    cores = os.cpu_count() or 1
    return (f"CPU seconds per sample (medians; {cores} cores = {cores} CPU-seconds per second):\n" + "\n".join(lines)
            if lines else "")


def _cpu_text(samples: list[dict[str, float]]) -> str:
    names = sorted({name for sample in samples for name in sample}, key=("drive", "server", "client").index)
    medians = {name: statistics.median(sample.get(name, 0.0) for sample in samples) for name in names}
    return " + ".join(f"{name} {value:.2f}" for name, value in medians.items()) + f" = {sum(medians.values()):.2f}"
