"""A seeded model-based test of one writer's file history (issue 12), shared by two executors.

:class:`Model` generates random steps — open (with/without ``O_APPEND``/``O_TRUNC``/``O_CREAT``),
pwrite, append, read, truncate, fsync, mmap write + msync, close, reopen, rename, remount —
from ``random.Random(seed)``, applies each to a reference (plain bytes in memory: what a
local disk would hold) and to an executor, and after every step compares sizes, listings
and contents. Executors: ``VfsExecutor`` (tests/drive/test_model_vfs.py: the Vfs over
in-memory fakes, no FUSE) and ``MountExecutor`` (tests/drive/test_model_mount.py: a real
mount, real syscalls). On a mismatch the error names the seed, the step and the recent steps.

Operation budgets: ``OAIOFS_MODEL_OPS`` (total operations per test, default per test file)
and ``OAIOFS_MODEL_SEED`` (first seed; default fixed, so CI is reproducible). The long mode
of issue 12 is ``OAIOFS_MODEL_OPS=100000`` (docs/drive.md, "Tests").
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any, Protocol

NAMES = ("a.txt", "b.log", "c.bin", "d.db")
MODES = {   # name -> (flags, readable, writable, append)
    "r": (os.O_RDONLY, True, False, False),
    "r+": (os.O_RDWR, True, True, False),
    "w": (os.O_WRONLY | os.O_CREAT | os.O_TRUNC, False, True, False),
    "w+": (os.O_RDWR | os.O_CREAT | os.O_TRUNC, True, True, False),
    "a": (os.O_WRONLY | os.O_CREAT | os.O_APPEND, False, True, True),
    "a+": (os.O_RDWR | os.O_CREAT | os.O_APPEND, True, True, True),
    "c": (os.O_RDWR | os.O_CREAT, True, True, False),
}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


@dataclass(eq=False)
class RefFile:
    """The reference content of one file (shared by the handles open on it, like an inode)."""

    data: bytearray = field(default_factory=bytearray)


@dataclass(eq=False)
class RefHandle:
    hid: int
    file: RefFile
    mode: str

    @property
    def readable(self) -> bool:
        return MODES[self.mode][1]

    @property
    def writable(self) -> bool:
        return MODES[self.mode][2]

    @property
    def append(self) -> bool:
        return MODES[self.mode][3]


class Executor(Protocol):
    """The system under test, addressed by file name and handle id."""

    def open(self, hid: int, name: str, flags: int) -> None: ...
    def pwrite(self, hid: int, offset: int, data: bytes) -> None: ...
    def append(self, hid: int, data: bytes) -> None: ...
    def read(self, hid: int, offset: int, size: int) -> bytes: ...
    def truncate(self, name: str, hid: int | None, length: int) -> None: ...
    def fsync(self, hid: int) -> None: ...
    def mmap_write(self, hid: int, offset: int, data: bytes) -> None: ...
    def close(self, hid: int) -> None: ...
    def rename(self, old: str, new: str) -> None: ...
    def remount(self) -> None: ...
    def size(self, name: str) -> int: ...
    def names(self) -> set[str]: ...
    def read_file(self, name: str) -> bytes: ...


class ModelMismatch(AssertionError):
    pass


class Model:
    """Random steps applied to a reference and an executor, checked after each step."""

    def __init__(self, seed: int, executor: Executor, *, max_write: int = 4096, big_write: int = 256 << 10,
                 remount_weight: float = 1.0, mmap: bool = True, check_content_every: int = 1,
                 skip: frozenset[str] = frozenset()) -> None:
        self.skip = skip
        self.seed = seed
        self.rng = random.Random(seed)
        self.ex = executor
        self.files: dict[str, RefFile] = {}
        self.handles: dict[int, RefHandle] = {}
        self.max_write, self.big_write = max_write, big_write
        self.remount_weight = remount_weight
        self.mmap = mmap
        self.check_content_every = check_content_every
        self.next_hid = 1
        self.steps = 0
        self.history: list[str] = []
        self.counts: dict[str, int] = {}

    # --- the run ---
    def run(self, operations: int) -> None:
        for _ in range(operations):
            self.step()
        self.close_all()
        self.check(content=True)

    def step(self) -> None:
        choices = self._choices()
        names, weights = zip(*choices)
        op = self.rng.choices(names, weights)[0]
        self.steps += 1
        self.counts[op] = self.counts.get(op, 0) + 1
        try:
            getattr(self, "_do_" + op)()
            self.check(content=self.steps % self.check_content_every == 0)
        except ModelMismatch:
            raise
        except Exception as exc:                 # noqa: BLE001 - report with the seed and the steps
            raise ModelMismatch(self._report(f"{op} raised {exc!r}")) from exc

    def _choices(self) -> list[tuple[str, float]]:
        writable = [h for h in self.handles.values() if h.writable]
        readable = [h for h in self.handles.values() if h.readable]
        out: list[tuple[str, float]] = [("open", 3.0 if len(self.handles) < 4 else 0.5)]
        if writable:
            out += [("append", 3.0), ("fsync", 2.0), ("truncate_fh", 0.7)]
            if any(not h.append for h in writable):
                out.append(("pwrite", 4.0))
            if self.mmap and any(h.readable and not h.append for h in writable):
                out.append(("mmap_write", 0.7))
        if readable:
            out.append(("read", 2.0))
        if self.handles:
            out += [("close", 2.5), ("reopen", 1.0)]
        if self.files:
            out += [("truncate_path", 0.5), ("rename", 0.6)]
        out.append(("remount", 0.05 * self.remount_weight))
        return [(op, w) for op, w in out if op not in self.skip]

    # --- steps ---
    def _log(self, text: str) -> None:
        self.history.append(f"{self.steps}: {text}")
        if len(self.history) > 60:
            del self.history[:20]

    def _data(self) -> bytes:
        n = self.rng.randint(1, self.big_write if self.rng.random() < 0.03 else self.max_write)
        return self.rng.randbytes(n)

    def _pick(self, pred: Any) -> RefHandle:
        return self.rng.choice([h for h in self.handles.values() if pred(h)])

    def _name_of(self, ref: RefFile) -> str | None:
        return next((n for n, f in self.files.items() if f is ref), None)

    def _do_open(self, name: str | None = None, mode: str | None = None) -> None:
        name = name or self.rng.choice(NAMES)
        if mode is None:
            modes = list(MODES) if name in self.files else [m for m in MODES if MODES[m][0] & os.O_CREAT]
            mode = self.rng.choice(modes)
        flags = MODES[mode][0]
        hid = self.next_hid
        self.next_hid += 1
        self._log(f"open h{hid} {name} {mode}")
        self.ex.open(hid, name, flags)
        ref = self.files.setdefault(name, RefFile())
        if flags & os.O_TRUNC:
            del ref.data[:]
        self.handles[hid] = RefHandle(hid, ref, mode)

    def _do_pwrite(self) -> None:
        h = self._pick(lambda h: h.writable and not h.append)
        data = self._data()
        size = len(h.file.data)
        offset = self.rng.choice([size, self.rng.randint(0, size), self.rng.randint(0, size + 100)])
        self._log(f"pwrite h{h.hid} @{offset} +{len(data)}")
        self.ex.pwrite(h.hid, offset, data)
        _write(h.file.data, offset, data)

    def _do_append(self) -> None:
        writable = [h for h in self.handles.values() if h.writable]
        appending = [h for h in writable if h.append]
        h = self.rng.choice(appending or writable)
        data = self._data()
        self._log(f"append h{h.hid} +{len(data)}")
        if h.append:
            self.ex.append(h.hid, data)
        else:
            self.ex.pwrite(h.hid, len(h.file.data), data)
        h.file.data += data

    def _do_read(self) -> None:
        h = self._pick(lambda h: h.readable)
        size = len(h.file.data)
        offset = self.rng.randint(0, size + 10)
        length = self.rng.randint(1, max(1, size + 10))
        self._log(f"read h{h.hid} @{offset} {length}")
        got = self.ex.read(h.hid, offset, length)
        want = bytes(h.file.data[offset:offset + length])
        if got != want:
            raise ModelMismatch(self._report(f"read h{h.hid} @{offset}: {len(got)} bytes, want {len(want)}"
                                             f"{'' if len(got) != len(want) else ' (different bytes)'}"))

    def _do_truncate_fh(self) -> None:
        h = self._pick(lambda h: h.writable)
        length = self._length(h.file)
        name = self._name_of(h.file)
        if name is None:
            return
        self._log(f"ftruncate h{h.hid} {name} {length}")
        self.ex.truncate(name, h.hid, length)
        _truncate(h.file.data, length)

    def _do_truncate_path(self) -> None:
        name = self.rng.choice(sorted(self.files))
        length = self._length(self.files[name])
        self._log(f"truncate {name} {length}")
        self.ex.truncate(name, None, length)
        _truncate(self.files[name].data, length)

    def _length(self, ref: RefFile) -> int:
        size = len(ref.data)
        return self.rng.choice([0, self.rng.randint(0, size), self.rng.randint(0, size + 5000)])

    def _do_fsync(self) -> None:
        h = self._pick(lambda h: h.writable)
        self._log(f"fsync h{h.hid}")
        self.ex.fsync(h.hid)

    def _do_mmap_write(self) -> None:
        h = self._pick(lambda h: h.writable and h.readable and not h.append)
        size = len(h.file.data)
        if size == 0:
            return
        offset = self.rng.randint(0, size - 1)
        data = self.rng.randbytes(self.rng.randint(1, min(size - offset, 8192)))
        self._log(f"mmap h{h.hid} @{offset} +{len(data)} + msync")
        self.ex.mmap_write(h.hid, offset, data)
        _write(h.file.data, offset, data)

    def _do_close(self, h: RefHandle | None = None) -> None:
        h = h or self.rng.choice(list(self.handles.values()))
        self._log(f"close h{h.hid}")
        del self.handles[h.hid]
        self.ex.close(h.hid)

    def _do_reopen(self) -> None:
        h = self.rng.choice(list(self.handles.values()))
        name = self._name_of(h.file)
        self._do_close(h)
        if name is not None:
            mode = h.mode if not MODES[h.mode][0] & os.O_TRUNC or self.rng.random() < 0.3 else "r+"
            self._do_open(name, mode)

    def _do_rename(self) -> None:
        old = self.rng.choice(sorted(self.files))
        busy = {self._name_of(h.file) for h in self.handles.values()}
        targets = [n for n in NAMES if n != old and (n not in self.files or n not in busy)]
        if not targets:
            return
        new = self.rng.choice(targets)
        self._log(f"rename {old} -> {new}")
        self.ex.rename(old, new)
        self.files[new] = self.files.pop(old)

    def _do_remount(self) -> None:
        self._log("remount")
        self.close_all()
        self.ex.remount()

    def close_all(self) -> None:
        for h in list(self.handles.values()):
            self._do_close(h)

    # --- checks ---
    def check(self, content: bool = True) -> None:
        names = self.ex.names()
        if names != set(self.files):
            raise ModelMismatch(self._report(f"listing {sorted(names)}, want {sorted(self.files)}"))
        for name, ref in sorted(self.files.items()):
            size = self.ex.size(name)
            if size != len(ref.data):
                raise ModelMismatch(self._report(f"stat {name}: size {size}, want {len(ref.data)}"))
            if content:
                got = self.ex.read_file(name)
                if got != ref.data:
                    raise ModelMismatch(self._report(f"{name}: content differs (got {len(got)} bytes, "
                                                     f"want {len(ref.data)}, first difference at "
                                                     f"{_first_difference(got, bytes(ref.data))})"))

    def expected(self) -> dict[str, bytes]:
        return {name: bytes(ref.data) for name, ref in self.files.items()}

    def _report(self, what: str) -> str:
        return (f"seed {self.seed}, step {self.steps}: {what}\nrecent steps:\n  " + "\n  ".join(self.history[-25:]))


def _write(buf: bytearray, offset: int, data: bytes) -> None:
    if offset > len(buf):
        buf.extend(b"\0" * (offset - len(buf)))
    buf[offset:offset + len(data)] = data


def _truncate(buf: bytearray, length: int) -> None:
    if length < len(buf):
        del buf[length:]
    else:
        buf.extend(b"\0" * (length - len(buf)))


def _first_difference(a: bytes, b: bytes) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
