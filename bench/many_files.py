"""Issue 16's rows: many small files into one object, and a ``git clone`` into the drive.

- ``many_commit``: N files (4 KiB, in 10 sub-folders) written through the mount until the
  server lists them all, beside N plain PUTs over one keep-alive session (same run);
- ``many_local``: the same N files until closed locally, beside a local-disk write of the tree;
- ``create_latency``: median create+write+close of the last 100 files beside the first 100;
- ``many_parallel`` (with ``OAIOFS_BENCH_PARALLEL_COMPARE=1``): the same through a drive mounted with
  ``--upload-parallel 4`` beside ``many_commit``'s mount time (the default: one op per object at a time);
- ``clone_local`` / ``clone_commit``: ``git clone`` of a generated local repository into the
  drive, until done locally and until every file is on the server, beside a local-disk clone;
- ``clone_floor``: the same clone into ``bench/fuse_floor.py`` (an in-memory fusepy filesystem with
  the drive's FUSE options that stores nothing), beside the local-disk clone: what FUSE round trips
  and fusepy's dispatch alone cost, the floor under ``clone_local`` on this machine.

Every measurement checks what it wrote (the server's sha256 of each file).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator
from oaiofs.client.api import ApiClient

from .measure import BenchError, Stopwatch
from .processes import log_tail, stop_process, wait_for
from .report import Row, Target
from .runner import FILES_USER, BenchRun
from .workloads import expect, run_rows

log = logging.getLogger(__name__)

FILE_SIZE = 4096
FOLDERS = 10
EDGE = 100                  # files at the start and the end compared for create latency
POLL_S = 0.5
GIT = shutil.which("git") or "git"
GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@127.0.0.1",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@127.0.0.1", GIT_CONFIG_NOSYSTEM="1",
               HOME="/nonexistent", LC_ALL="C")


def tree(count: int, seed: str) -> list[tuple[str, bytes]]:
    """``count`` distinct 4 KiB files spread over ``FOLDERS`` sub-folders (round robin)."""
    files = []
    for i in range(count):
        head = f"{seed} file {i}\n".encode()
        files.append((f"d{i % FOLDERS}/f{i:05d}.txt", head + bytes(FILE_SIZE - len(head))))
    return files


def write_tree(root: Path, files: list[tuple[str, bytes]]) -> list[float]:
    """Create the folders, then each file (open, write, close); return each file's seconds."""
    for d in {rel.split("/")[0] for rel, _ in files}:
        (root / d).mkdir(exist_ok=True)
    latencies = []
    for rel, data in files:
        start = time.perf_counter()
        fd = os.open(root / rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        latencies.append(time.perf_counter() - start)
    return latencies


def server_files(api: ApiClient, oaio_id: str) -> dict[str, str]:
    """path -> sha256 of the object's files on the server."""
    doc = api.get_object(oaio_id)
    return {f["path"]: f.get("sha256") or "" for f in doc.get("files", []) if f.get("kind", "file") == "file"}


def wait_listed(api: ApiClient, oaio_id: str, expected: dict[str, str], timeout: float) -> float:
    """Poll until the server lists every ``expected`` path with its sha256; return the perf_counter time."""
    deadline = time.monotonic() + timeout
    missing = len(expected)
    while time.monotonic() < deadline:
        seen = time.perf_counter()
        have = server_files(api, oaio_id)
        missing = sum(1 for p, sha in expected.items() if have.get(p) != sha)
        if not missing:
            return seen
        time.sleep(POLL_S)
    raise BenchError(f"{missing} of {len(expected)} files were not on the server within {timeout:.0f} s")


def many_small_files(run: BenchRun) -> list[Row]:
    cfg = run.config
    count = cfg.many_count
    commit = Row("many_commit", f"{count} files of 4 KiB in {FOLDERS} folders through the mount, until the "
                 "server lists them all", f"{count} plain PUTs over one keep-alive session", "s", False,
                 Target("min_ratio", 1.0, "≥ 1.0× (mount faster)"))
    local = Row("many_local", f"the same {count} files until closed locally", "local-disk write of the same tree",
                "s", False, Target("min_ratio", 0.0, "(info)"))
    edge = min(EDGE, count // 2)
    latency = Row("create_latency", f"median create+write+close of files {count - edge + 1}-{count}",
                  f"median of files 1-{edge}", "ms", False, Target("min_ratio", 0.5, "≤ 2×"))
    parallel = Row("many_parallel", f"many_commit's {count} files with --upload-parallel 4",
                   "many_commit's mount (default: one op per object at a time)", "s", False,
                   Target("min_ratio", 0.0, "(info)"))
    compare = os.environ.get("OAIOFS_BENCH_PARALLEL_COMPARE") == "1"
    api = run.api(FILES_USER)

    def baseline_puts(i: int) -> float:
        oaio_id = api.create_object({"_name": f"many-put-{i}"})["oaio_id"]
        files = tree(count, f"put-{i}")
        with Stopwatch() as t:
            for rel, data in files:
                api.put_file(oaio_id, rel, data)
        expect(len(server_files(api, oaio_id)) == count, "the PUT loop did not store every file")
        return t.seconds

    def local_disk(i: int) -> float:
        root = run.work_dir / f"many-local-{i}"
        root.mkdir()
        with Stopwatch() as t:
            latencies = write_tree(root, tree(count, f"local-{i}"))
        shutil.rmtree(root)
        if not run.mounts_enabled:          # --baselines-only: the local disk's first files stand in
            latency.baseline_samples.append(statistics.median(latencies[:edge]) * 1000)
        return t.seconds

    def through_mount(i: int, extra_args: tuple[str, ...] = ()) -> float:
        name = f"many-drive-{i}{'-par' if extra_args else ''}"
        oaio_id = api.create_object({"_name": name})["oaio_id"]
        files = tree(count, f"drive-{i}")
        expected = {rel: hashlib.sha256(data).hexdigest() for rel, data in files}
        with run.fresh_mount(FILES_USER, cfg.row_timeout_s + count * 0.5, extra_args) as mount:
            folder = mount.mountpoint / name
            expect(folder.is_dir(), f"the drive does not show the object folder {name}")
            with run.profiled(mount, f"many_commit-{i}"):
                start = time.perf_counter()
                latencies = write_tree(folder, files)
                closed = time.perf_counter()
                seen = wait_listed(api, oaio_id, expected, cfg.commit_timeout_s + count * 0.2)
        if extra_args:
            return seen - start
        local.samples.append(closed - start)
        first, last = latencies[:edge], latencies[-edge:]
        latency.samples.append(statistics.median(last) * 1000)
        latency.baseline_samples.append(statistics.median(first) * 1000)
        commit.detail.setdefault("commit_after_close_s", []).append(round(seen - closed, 2))
        latency.detail.setdefault("p90_last_ms", []).append(round(sorted(last)[int(len(last) * 0.9)] * 1000, 2))
        return seen - start

    def body() -> None:
        for i in range(cfg.many_reps):
            commit.baseline_samples.append(baseline_puts(i))
            local.baseline_samples.append(local_disk(i))
            if run.mounts_enabled:
                commit.samples.append(through_mount(i))
                if compare:
                    parallel.baseline_samples.append(commit.samples[-1])
                    parallel.samples.append(through_mount(i, ("--upload-parallel", "4")))

    rows = [commit, local, latency] + ([parallel] if compare else [])
    run_rows(run, rows, body)
    return rows


def make_repo(root: Path, count: int) -> None:
    """A git repository of ``count`` small text files in a few folders, one commit."""
    root.mkdir(parents=True)
    for i in range(count):
        path = root / f"src{i % 20}" / f"mod{i:05d}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"# module {i}\n" + "".join(f"value_{j} = {i * j}\n" for j in range(60)))
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run([GIT, *args], cwd=root, env=GIT_ENV, check=True, stdout=subprocess.DEVNULL)


def clone(source: Path, target: Path) -> float:
    with Stopwatch() as t:
        result = subprocess.run([GIT, "clone", "-q", str(source), str(target)], env=GIT_ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise BenchError(f"git clone failed: {result.stderr.decode(errors='replace')[:300]}")
    return t.seconds


def worktree_files(root: Path) -> dict[str, str]:
    """relative path -> sha256 of the checked-out files (not .git: its files differ per clone)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@contextlib.contextmanager
def floor_mount(mountpoint: Path, log_file: Path) -> Iterator[Path]:
    """``bench/fuse_floor.py`` mounted at ``mountpoint`` (run as a script from a neutral cwd)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    with open(log_file, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fuse_floor.py")), str(mountpoint)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=log_file.parent)
    try:
        wait_for(lambda: os.path.ismount(mountpoint) or proc.poll() is not None, 30, "the floor filesystem")
        expect(proc.poll() is None, f"the floor filesystem exited: {log_tail(log_file)}")
        yield mountpoint
    finally:
        if os.path.ismount(mountpoint):
            subprocess.run(["fusermount", "-u", str(mountpoint)], stdin=subprocess.DEVNULL, check=False)
        stop_process(proc)


def git_clone(run: BenchRun) -> list[Row]:
    cfg = run.config
    count = cfg.clone_files
    done = Row("clone_local", f"`git clone` of a {count}-file local repository into the drive, until done",
               "the same clone onto the local disk", "s", False, Target("min_ratio", 0.1, "≤ 10×"))
    committed = Row("clone_commit", "the same clone, until every checked-out file is on the server",
                    "the same clone onto the local disk", "s", False, Target("min_ratio", 0.0, "(info)"))
    floor = Row("clone_floor", "the same clone into an in-memory fusepy filesystem that stores nothing "
                "(`bench/fuse_floor.py`: the floor of any fusepy drive)", "the same clone onto the local disk", "s",
                False, Target("min_ratio", 0.0, "(info)"))
    api = run.api(FILES_USER)
    source = run.work_dir / "clone-source"

    def body() -> None:
        if not source.exists():
            make_repo(source, count)
        local_target = run.work_dir / "clone-local"
        seconds = clone(source, local_target)
        expected = {f"repo/{p}": sha for p, sha in worktree_files(local_target).items()}
        expect(len(expected) == count, f"the local clone has {len(expected)} files, expected {count}")
        shutil.rmtree(local_target)
        done.baseline_samples.append(seconds)
        committed.baseline_samples.append(seconds)
        floor.baseline_samples.append(seconds)
        if not run.mounts_enabled:
            return
        oaio_id = api.create_object({"_name": "clone"})["oaio_id"]
        with run.fresh_mount(FILES_USER, cfg.row_timeout_s + count * 0.5) as mount:
            folder = mount.mountpoint / "clone"
            expect(folder.is_dir(), "the drive does not show the object folder clone")
            with run.profiled(mount, "clone"):
                start = time.perf_counter()
                clone(source, folder / "repo")
                cloned = time.perf_counter()
                seen = wait_listed(api, oaio_id, expected, cfg.commit_timeout_s + count * 0.2)
            status = subprocess.run([GIT, "status", "--porcelain"], cwd=folder / "repo", env=GIT_ENV,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            expect(status.returncode == 0 and not status.stdout.strip(),
                   f"git status in the drive's clone is not clean: {status.stdout[:300]!r} {status.stderr[:300]!r}")
        done.samples.append(cloned - start)
        committed.samples.append(seen - start)
        with floor_mount(run.work_dir / "mnt-floor", run.work_dir / "fuse-floor.log") as mountpoint:
            target = mountpoint / "repo"
            floor.samples.append(clone(source, target))
            expect(worktree_files(target) == {p[len("repo/"):]: sha for p, sha in expected.items()},
                   "the clone into the floor filesystem differs from the local one")

    rows = [done, committed, floor]
    run_rows(run, rows, body)
    return rows
