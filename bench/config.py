"""Benchmark sizes and limits: the full run and the ``--quick`` smoke run."""
from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20


@dataclass(frozen=True)
class BenchConfig:
    """Sizes follow issue 6; ``reps`` repetitions per measurement (median), cut short by ``row_budget_s``."""

    big_size: int = 256 * MIB
    small_count: int = 2000
    small_size: int = 4096
    write_size: int = 128 * MIB
    stream_size: int = 1024 * MIB
    reps: int = 3
    warm_reps: int = 5
    row_budget_s: float = 60.0        # stop repeating a row after this much time
    row_timeout_s: float = 300.0      # kill a drive stuck in one workload this long
    commit_timeout_s: float = 180.0   # wait this long for a closed file to reach the server
    block_size: int = MIB
    populate_workers: int = 1        # 2 or 4 measured no faster (61 vs 63 ms per object)
    cache_size: str | None = None
    many_count: int = 1000            # issue 16: files written into one object (4 KiB, 10 folders)
    many_reps: int = 1
    clone_files: int = 1000           # issue 16: files of the repository cloned into the drive

    @classmethod
    def quick(cls, **overrides: object) -> "BenchConfig":
        """Tiny sizes for the smoke test: every row runs, nothing is meaningful about speed."""
        values = dict(big_size=4 * MIB, small_count=20, write_size=2 * MIB, stream_size=8 * MIB, reps=1,
                      warm_reps=1, row_budget_s=30.0, row_timeout_s=60.0, commit_timeout_s=60.0,
                      many_count=30, clone_files=20)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
