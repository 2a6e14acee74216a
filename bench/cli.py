"""``scripts/bench [--quick] [--json PATH]``: run the suite, print the table, write the JSON."""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from oaiofs.errors import OaioError

from .config import BenchConfig
from .measure import BenchError
from .report import Row, cpu_summary, markdown_table, write_json
from .runner import BenchRun
from .workloads import WORKLOADS

log = logging.getLogger(__name__)

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run; numbers mean nothing)")
    parser.add_argument("--json", type=Path, default=None,
                        help="where to write the JSON (default: bench/results/<timestamp>.json)")
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help=f"comma-separated workloads to run (default: all of {','.join(WORKLOADS)})")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per measurement (median)")
    parser.add_argument("--objects", type=int, default=None, dest="small_count",
                        help="number of small objects (default 2000; 20 with --quick)")
    parser.add_argument("--many-files", type=int, default=None, dest="many_count",
                        help="files written into one object by the 'many' rows (default 1000; 30 with --quick)")
    parser.add_argument("--clone-files", type=int, default=None, dest="clone_files",
                        help="files of the repository the 'clone' rows clone (default 1000; 20 with --quick)")
    parser.add_argument("--cache-size", default=None, help="passed to oaiofs mount --cache-size")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra argument for oaiofs serve (repeatable), e.g. --server-arg=--db=postgresql://...")
    parser.add_argument("--mount-arg", action="append", default=[],
                        help="extra argument for oaiofs mount (repeatable), e.g. --mount-arg=--attr-timeout=30")
    parser.add_argument("--baselines-only", action="store_true",
                        help="measure only the baselines (no drive is mounted)")
    parser.add_argument("--profile", action="store_true",
                        help="record py-spy profiles of the drive during each mount measurement")
    parser.add_argument("--profile-idle", action="store_true", help="include idle (waiting) threads in profiles")
    parser.add_argument("--work-dir", type=Path, default=None, help="scratch folder (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs, server data)")
    parser.add_argument("--strict", action="store_true", help="exit 3 when a row misses its target")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def _sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt("SIGTERM")


def check_environment(mounts: bool) -> None:
    """The benchmark mounts FUSE and drops the page cache: it needs root and /dev/fuse."""
    if os.geteuid() != 0:
        raise BenchError("the benchmark drops the page cache and must run as root")
    if mounts and not os.path.exists("/dev/fuse"):
        raise BenchError("/dev/fuse is missing; the drive cannot be mounted")


def machine_info() -> dict[str, object]:
    """What the numbers depend on; a high load average means other work shared the CPUs."""
    return {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "machine": platform.machine(), "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def run_suite(args: argparse.Namespace, config: BenchConfig, work_dir: Path,
              profile_dir: Path | None) -> tuple[list[Row], dict[str, object]]:
    """Start everything, run the selected workloads, stop everything; return the rows and run facts."""
    selected = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in selected if name not in WORKLOADS]
    if unknown:
        raise BenchError(f"unknown workloads {unknown}; choose from {list(WORKLOADS)}")
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        run = BenchRun(config, work_dir, stack, server_args=args.server_arg, mount_args=args.mount_arg,
                       profile_dir=profile_dir, profile_idle=args.profile_idle,
                       mounts_enabled=not args.baselines_only)
        run.start()
        for name in WORKLOADS:
            if name in selected:
                started = time.monotonic()
                log.info("workload %s ...", name)
                rows.extend(WORKLOADS[name](run))
                log.info("workload %s done in %.1f s", name, time.monotonic() - started)
        facts = {"populate_s": round(run.dataset.seconds, 2),
                 "setup_server_errors_retried": run.dataset.server_errors_retried, "profiles": run.profiles}
    return rows, facts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _sigterm)
    overrides = {k: v for k, v in (("reps", args.reps), ("cache_size", args.cache_size),
                                   ("small_count", args.small_count),
                                   ("many_count", args.many_count), ("clone_files", args.clone_files)) if v is not None}
    config = BenchConfig.quick(**overrides) if args.quick else BenchConfig(**overrides)  # type: ignore[arg-type]
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    json_path = args.json or RESULTS_DIR / f"{stamp}.json"
    profile_dir = json_path.with_suffix("").with_name(json_path.stem + "-profiles") if args.profile else None
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="oaiofs-bench-"))
    started = time.monotonic()
    machine_at_start = machine_info()
    try:
        check_environment(not args.baselines_only)
        rows, facts = run_suite(args, config, work_dir, profile_dir)
    except KeyboardInterrupt:
        print("benchmark interrupted; everything was unmounted and stopped", file=sys.stderr)
        return 130
    except (BenchError, OaioError) as exc:
        print(f"benchmark failed: {exc!r}", file=sys.stderr)
        return 2
    finally:
        if args.keep or args.work_dir:
            print(f"scratch folder kept: {work_dir}", file=sys.stderr)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    meta = {"started": stamp, "quick": args.quick, "duration_s": round(time.monotonic() - started, 1),
            "machine": machine_at_start, "loadavg_at_end": machine_info()["loadavg_1_5_15"], "config": {k: v for k, v in vars(config).items()}, **facts}
    write_json(json_path, rows, meta)
    print(markdown_table(rows))
    if summary := cpu_summary(rows):
        print("\n" + summary)
    print(f"\n{sum(r.passed for r in rows)}/{len(rows)} rows meet their target; "
          f"run took {meta['duration_s']} s; JSON: {json_path}")
    if any(r.error for r in rows):
        return 1
    return 3 if args.strict and not all(r.passed for r in rows) else 0
