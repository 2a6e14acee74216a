"""The workloads of issue 6, each measured beside its same-run baseline.

Conventions: a *cold* measurement starts on a fresh mount with an empty cache after
the kernel page cache was dropped; baselines of cold rows drop the page cache too,
so both sides pay the same for the server's disk. Every measurement checks what it
read (sizes, counts, and contents where that is cheap outside the timed part).
"""
from __future__ import annotations

import hashlib
import logging
import subprocess
import time
from typing import Callable

from .actions import feed_cursor, http_get_to_null, ls_l, sha256_of, size_text, wait_committed, write_into
from .dataset import WRITES_OBJECT
from .measure import BenchError, CpuMeter, RssSampler, Stopwatch, drop_caches, mib_per_s, read_file, repeat
from .payload import Payload
from .processes import MountHandle
from .report import Row, Target
from .runner import FILES_USER, MANY_USER, BenchRun

log = logging.getLogger(__name__)


def expect(condition: bool, message: str) -> None:
    """Fail the workload with ``message`` unless ``condition`` holds (a wrong answer is not a result)."""
    if not condition:
        raise BenchError(message)


def run_rows(run: BenchRun, rows: list[Row], body: Callable[[], None]) -> None:
    """Run ``body``; on an error mark every row it left without numbers (the rest of the suite goes on)."""
    try:
        body()
    except Exception as exc:  # noqa: BLE001 - one broken workload must not hide the others
        log.exception("workload %s failed", "/".join(r.key for r in rows))
        for row in rows:
            if not row.samples or (row.baseline_label and not row.baseline_samples):
                row.error = f"{type(exc).__name__}: {exc}"[:3000]
    if not run.mounts_enabled:
        for row in rows:
            row.error = row.error or "drive not measured (--baselines-only)"


# --- rows 1 and 2: cold and warm sequential read of the big file ---------------------------------
def sequential_reads(run: BenchRun) -> list[Row]:
    cfg, big = run.config, run.dataset.big
    cold = Row("cold_read", f"cold sequential read of a {size_text(big.payload.size)} file",
               "HTTP GET, keep-alive, to /dev/null", "MiB/s", True, Target("min_ratio", 0.8, "≥ 0.8×"))
    warm = Row("warm_read", "warm read of the same file after close and reopen",
               "local file read from the page cache", "MiB/s", True, Target("min_ratio", 0.5, "≥ 0.5×"))
    api = run.api(FILES_USER)

    def baseline_get(_: int) -> float:
        drop_caches()
        with CpuMeter(server=run.server_pid) as cpu, Stopwatch() as t:
            n = http_get_to_null(api, big, cfg.block_size)
        expect(n == big.payload.size, f"GET returned {n} bytes, expected {big.payload.size}")
        cold.detail.setdefault("baseline_cpu_s", []).append(cpu.seconds)
        return mib_per_s(n, t.seconds)

    def mount_cold_then_warm(i: int) -> float:
        with run.fresh_mount(FILES_USER) as mount:
            path = mount.mountpoint / big.drive_path
            drop_caches()
            with run.profiled(mount, f"cold_read-{i}"), CpuMeter(drive=mount.pid, server=run.server_pid) as cpu, \
                    Stopwatch() as t:
                n, first_byte = read_file(path, cfg.block_size)
            expect(n == big.payload.size, f"the drive returned {n} bytes, expected {big.payload.size}")
            cold.detail.setdefault("first_byte_s", []).append(round(first_byte, 4))
            cold.detail.setdefault("cpu_s", []).append(cpu.seconds)
            for j in range(cfg.warm_reps):
                with run.profiled(mount, f"warm_read-{i}-{j}"), Stopwatch() as w:
                    n, _ = read_file(path, cfg.block_size)
                expect(n == big.payload.size, f"warm read returned {n} bytes")
                warm.samples.append(mib_per_s(n, w.seconds))
            expect(sha256_of(path) == big.payload.sha256, "the drive returned wrong bytes for the big file")
        return mib_per_s(big.payload.size, t.seconds)

    def local_page_cache() -> None:
        local = run.work_dir / "local-big.bin"
        with open(local, "wb") as f:
            for chunk in big.payload.chunks():
                f.write(chunk)
        read_file(local, cfg.block_size)            # now in the page cache
        for _ in range(cfg.warm_reps):
            with Stopwatch() as t:
                n, _ = read_file(local, cfg.block_size)
            warm.baseline_samples.append(mib_per_s(n, t.seconds))
        local.unlink()

    def body() -> None:
        cold.baseline_samples.extend(repeat(baseline_get, cfg.reps, cfg.row_budget_s))
        local_page_cache()
        if run.mounts_enabled:
            cold.samples.extend(repeat(mount_cold_then_warm, cfg.reps, cfg.row_budget_s))

    run_rows(run, [cold, warm], body)
    return [cold, warm]


# --- row 3: cold cat of one small file in each of many objects ----------------------------------
def small_files_cat(run: BenchRun) -> list[Row]:
    cfg, small = run.config, run.dataset.small
    row = Row("cat_small", f"cold `cat` of one {size_text(cfg.small_size)} file in each of {len(small)} objects",
              f"{len(small)} GETs one by one over one keep-alive session", "s", False,
              Target("min_ratio", 1.0, "≥ 1.0× (mount faster)"))
    api = run.api(MANY_USER)
    expected = hashlib.sha256(b"".join(f.payload.to_bytes() for f in small)).hexdigest()

    def baseline(_: int) -> float:
        drop_caches()
        digest = hashlib.sha256()
        with Stopwatch() as t:
            for stored in small:
                digest.update(api.get_file(stored.oaio_id, stored.path))
        expect(digest.hexdigest() == expected, "GETs returned wrong bytes")
        return t.seconds

    def mount_cat(i: int) -> float:
        with run.fresh_mount(MANY_USER) as mount:
            drop_caches()
            with run.profiled(mount, f"cat_small-{i}"), Stopwatch() as t:
                result = subprocess.run(["cat", *[f.drive_path for f in small]], cwd=mount.mountpoint,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            expect(result.returncode == 0, f"cat failed: {result.stderr.decode(errors='replace')[:300]}")
            expect(hashlib.sha256(result.stdout).hexdigest() == expected, "cat through the drive read wrong bytes")
        return t.seconds

    def body() -> None:
        row.baseline_samples.extend(repeat(baseline, cfg.reps, cfg.row_budget_s))
        if run.mounts_enabled:
            row.samples.extend(repeat(mount_cat, cfg.reps, cfg.row_budget_s))

    run_rows(run, [row], body)
    return [row]


# --- rows 4 and 5: cold and warm `ls -l` of a root with many objects ----------------------------
def root_listing(run: BenchRun) -> list[Row]:
    cfg, count = run.config, len(run.dataset.small)
    cold = Row("ls_cold", f"cold `ls -l` of a root with {count} objects",
               "one GET /api/v1/objects (ApiClient.list_objects)", "s", False,
               Target("min_ratio", 1 / 3, "≤ 3× the call's time"))
    warm = Row("ls_warm", "warm `ls -l` of the same root", f"`ls -l` of a local {count}-entry folder", "s",
               False, Target("min_ratio", 1 / 3, "≤ 3× local `ls -l`"))
    api = run.api(MANY_USER)

    def baseline_call(_: int) -> float:
        drop_caches()
        with Stopwatch() as t:
            objects, _cursor = api.list_objects()
        expect(len(objects) == count, f"the listing returned {len(objects)} objects, expected {count}")
        return t.seconds

    def mount_cold_then_warm(i: int) -> float:
        with run.fresh_mount(MANY_USER) as mount:
            drop_caches()
            with run.profiled(mount, f"ls_cold-{i}"):
                seconds, entries = ls_l(mount.mountpoint)
            expect(entries == count, f"ls -l listed {entries} entries, expected {count}")
            for j in range(cfg.warm_reps):
                with run.profiled(mount, f"ls_warm-{i}-{j}"):
                    warm_seconds, entries = ls_l(mount.mountpoint)
                expect(entries == count, f"warm ls -l listed {entries} entries, expected {count}")
                warm.samples.append(warm_seconds)
        return seconds

    def local_folder() -> None:
        local = run.work_dir / "local-root"
        local.mkdir(exist_ok=True)
        for stored in run.dataset.small:
            (local / stored.object_name).mkdir(exist_ok=True)
        ls_l(local)
        for _ in range(cfg.warm_reps):
            seconds, entries = ls_l(local)
            expect(entries == count, f"local ls -l listed {entries} entries")
            warm.baseline_samples.append(seconds)

    def body() -> None:
        cold.baseline_samples.extend(repeat(baseline_call, max(cfg.reps, 3), cfg.row_budget_s))
        local_folder()
        if run.mounts_enabled:
            cold.samples.extend(repeat(mount_cold_then_warm, cfg.reps, cfg.row_budget_s))

    run_rows(run, [cold, warm], body)
    return [cold, warm]


# --- row 6: write a file and close it, until the server has it ----------------------------------
def write_until_committed(run: BenchRun) -> list[Row]:
    cfg, writes_id = run.config, run.dataset.writes_oaio_id
    row = Row("write_commit", f"write a {size_text(cfg.write_size)} file and close, until committed on the server",
              "plain HTTP PUT of the same bytes", "MiB/s", True, Target("min_ratio", 0.75, "≥ 0.75×"))
    api = run.api(FILES_USER)

    def baseline_put(i: int) -> float:
        payload = Payload(cfg.write_size, f"put-{i}")
        data = payload.to_bytes()
        with CpuMeter(server=run.server_pid) as cpu, Stopwatch() as t:
            doc = api.put_file(writes_id, f"baseline-{i}.bin", data)
        expect(doc.get("sha256") == payload.sha256, "the plain PUT stored different bytes")
        row.detail.setdefault("baseline_cpu_s", []).append(cpu.seconds)
        return mib_per_s(payload.size, t.seconds)

    def mount_write(mount: MountHandle, i: int) -> float:
        payload = Payload(cfg.write_size, f"write-{i}")
        name = f"written-{i}.bin"
        data, sha256 = payload.to_bytes(), payload.sha256        # made before the clock, as for the PUT
        cursor = feed_cursor(api)
        with run.profiled(mount, f"write_commit-{i}"), CpuMeter(drive=mount.pid, server=run.server_pid) as cpu:
            start = time.perf_counter()
            write_into(mount.mountpoint / WRITES_OBJECT / name, data, cfg.block_size)
            closed = time.perf_counter()
            seen = wait_committed(api, writes_id, name, sha256, cursor, cfg.commit_timeout_s)
        row.detail.setdefault("cpu_s", []).append(cpu.seconds)
        row.detail.setdefault("close_s", []).append(round(closed - start, 4))
        row.detail.setdefault("commit_after_close_s", []).append(round(seen - closed, 4))
        return mib_per_s(payload.size, seen - start)

    def body() -> None:
        if not run.mounts_enabled:
            row.baseline_samples.extend(repeat(baseline_put, cfg.reps, cfg.row_budget_s))
            return
        with run.fresh_mount(FILES_USER) as mount:
            folder = mount.mountpoint / WRITES_OBJECT
            expect(folder.is_dir(), f"the drive does not show the object folder {folder.name}")

            def pair(i: int) -> float:
                """A PUT and a write through the mount back to back: both see the same machine state."""
                row.baseline_samples.append(baseline_put(i))
                return mount_write(mount, i)

            row.samples.extend(repeat(pair, cfg.reps, cfg.row_budget_s))

    run_rows(run, [row], body)
    return [row]


# --- row 7: peak memory of the drive while streaming a big file in and out ----------------------
def peak_memory(run: BenchRun) -> list[Row]:
    cfg, stream = run.config, run.dataset.stream
    row = Row("peak_rss", f"mount process peak RSS while streaming a {size_text(cfg.stream_size)} file in and out",
              "", "MiB", False, Target("max_value", 150.0, "≤ 150 MiB"))
    api = run.api(FILES_USER)

    def body() -> None:
        if not run.mounts_enabled:
            return
        payload = Payload(cfg.stream_size, "stream-in")
        _ = payload.sha256
        cursor = feed_cursor(api)
        with run.fresh_mount(FILES_USER) as mount, RssSampler(mount.pid) as sampler:
            with Stopwatch() as t_in:
                write_into(mount.mountpoint / WRITES_OBJECT / "stream-in.bin", payload, cfg.block_size)
                wait_committed(api, run.dataset.writes_oaio_id, "stream-in.bin", payload.sha256, cursor,
                               cfg.commit_timeout_s)
            with Stopwatch() as t_out:
                n, _ = read_file(mount.mountpoint / stream.drive_path, cfg.block_size)
            expect(n == stream.payload.size, f"the drive returned {n} bytes of {stream.payload.size}")
        row.detail.update(vm_hwm_mib=round(sampler.peak_hwm_mib, 1),
                          tree_rss_mib=round(sampler.peak_tree_rss_mib, 1), rss_samples=sampler.samples,
                          in_mib_s=round(mib_per_s(payload.size, t_in.seconds), 1),
                          out_mib_s=round(mib_per_s(n, t_out.seconds), 1))
        row.samples.append(max(sampler.peak_hwm_mib, sampler.peak_tree_rss_mib))

    run_rows(run, [row], body)
    return [row]


from .many_files import git_clone, many_small_files  # noqa: E402  (issue 16's rows; they use expect/run_rows)

#: the suite in the order of the issue's table (each entry may produce several rows)
WORKLOADS: dict[str, Callable[[BenchRun], list[Row]]] = {
    "reads": sequential_reads,
    "cat": small_files_cat,
    "ls": root_listing,
    "write": write_until_committed,
    "rss": peak_memory,
    "many": many_small_files,
    "clone": git_clone,
}
