"""The shared scenarios: what ordinary programs do to files, written once against ``adaptors.Fs``.

Each scenario works inside its own object folder ``root`` and returns the tree it expects
the drive to hold afterwards (:data:`Tree`); the test runs it on the Vfs and on a real
mount, compares the tree on the drive that wrote it, and later through a second drive
with an empty cache (what the server really holds). A conflict copy or a stray file is a
difference like any other.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Callable

from tests.scenarios.adaptors import Fs

CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND


@dataclass(frozen=True)
class File:
    data: bytes
    perm: int | None = None            # st_mode & 0o777 when the scenario set it
    mtime_ns: int | None = None        # when the scenario set it


@dataclass(frozen=True)
class Link:
    target: str


@dataclass(frozen=True)
class Dir:
    pass


Tree = dict[str, File | Link | Dir]          # path under the object folder -> what it must be
Scenario = Callable[[Fs, str], Tree]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__] = fn
    return fn


def write_file(fs: Fs, path: str, data: bytes, flags: int = CREATE) -> None:
    fd = fs.open(path, flags)
    try:
        fs.write(fd, data)
    finally:
        fs.close(fd)


def read_tree(fs: Fs, root: str) -> Tree:
    """Everything under ``root`` (not its ``values.json``), as the drive shows it."""
    out: Tree = {}
    folders = [""]
    while folders:
        folder = folders.pop()
        for name in fs.listdir(f"{root}/{folder}" if folder else root):
            rel = f"{folder}/{name}" if folder else name
            if rel == "values.json":
                continue
            st = fs.lstat(f"{root}/{rel}")
            if st.kind == "dir":
                out[rel] = Dir()
                folders.append(rel)
            elif st.kind == "link":
                out[rel] = Link(fs.readlink(f"{root}/{rel}"))
            else:
                out[rel] = File(fs.read_file(f"{root}/{rel}"), st.perm, st.mtime_ns)
    return out


def differences(want: Tree, have: Tree) -> list[str]:
    """Human-readable differences (empty when the drive holds what the scenario expects)."""
    problems = [f"missing: {p}" for p in sorted(set(want) - set(have))]
    problems += [f"unexpected: {p}" for p in sorted(set(have) - set(want))]
    for path in sorted(set(want) & set(have)):
        w, h = want[path], have[path]
        if type(w) is not type(h):
            problems.append(f"{path}: is {type(h).__name__}, want {type(w).__name__}")
        elif isinstance(w, File) and isinstance(h, File):
            if w.data != h.data:
                problems.append(f"{path}: {len(h.data)} bytes differ from the {len(w.data)} expected")
            if w.perm is not None and w.perm != h.perm:
                problems.append(f"{path}: mode {oct(h.perm or 0)}, want {oct(w.perm)}")
            if w.mtime_ns is not None and w.mtime_ns != h.mtime_ns:
                problems.append(f"{path}: mtime_ns {h.mtime_ns}, want {w.mtime_ns}")
        elif w != h:
            problems.append(f"{path}: {h}, want {w}")
    return problems


# --------------------------------------------------------------------------- the scenarios
@scenario
def shell_append_loop(fs: Fs, root: str) -> Tree:
    """``for i in ...; do echo "line $i" >> log.txt; wc -l < log.txt; done`` (issue 12, item 1)."""
    want = b""
    for i in range(40):
        line = f"line {i}\n".encode()
        write_file(fs, f"{root}/log.txt", line, APPEND)
        want += line
        assert fs.read_file(f"{root}/log.txt") == want, f"after append {i}"
    return {"log.txt": File(want)}


@scenario
def fsync_then_write_on_one_descriptor(fs: Fs, root: str) -> Tree:
    """write, fsync, write, fsync, close: one writer's history, no conflict copy (issue 12, item 2)."""
    fd = fs.open(f"{root}/f", os.O_RDWR | os.O_CREAT)
    fs.write(fd, b"A" * 1000)
    fs.fsync(fd)
    fs.write(fd, b"B" * 1000)
    fs.fsync(fd)
    fs.write(fd, b"C" * 10)
    fs.close(fd)
    return {"f": File(b"A" * 1000 + b"B" * 1000 + b"C" * 10)}


@scenario
def editor_saves_through_a_temporary_file(fs: Fs, root: str) -> Tree:
    """gedit/VS Code: write a temporary file, fsync it, rename it over the document; three times."""
    write_file(fs, f"{root}/doc.txt", b"first draft\n")
    for n in range(3):
        tmp = f"{root}/.doc.txt.{n}.tmp"
        fd = fs.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        fs.write(fd, f"draft {n}\n".encode() * (n + 1))
        fs.fsync(fd)
        fs.close(fd)
        fs.rename(tmp, f"{root}/doc.txt")
    return {"doc.txt": File(b"draft 2\n" * 3)}


@scenario
def editor_keeps_a_backup_while_saving(fs: Fs, root: str) -> Tree:
    """vim's default: rename the file to a backup, write the new file, remove the backup."""
    write_file(fs, f"{root}/notes.md", b"# notes\nold\n")
    fs.rename(f"{root}/notes.md", f"{root}/notes.md~")
    write_file(fs, f"{root}/notes.md", b"# notes\nnew\n")
    fs.unlink(f"{root}/notes.md~")
    return {"notes.md": File(b"# notes\nnew\n")}


@scenario
def truncate_and_rewrite(fs: Fs, root: str) -> Tree:
    """O_TRUNC to a shorter content, truncate by path to grow (zeros), ftruncate to shrink."""
    write_file(fs, f"{root}/t", b"x" * 5000)
    write_file(fs, f"{root}/t", b"short")                 # O_TRUNC
    fs.truncate(f"{root}/t", 9)                           # grows with zeros
    fd = fs.open(f"{root}/u", os.O_RDWR | os.O_CREAT)
    fs.write(fd, b"0123456789")
    fs.ftruncate(fd, 4)
    fs.close(fd)
    return {"t": File(b"short\0\0\0\0"), "u": File(b"0123")}


@scenario
def overwrite_inside_and_write_past_the_end(fs: Fs, root: str) -> Tree:
    """pwrite into the middle and beyond the end (the hole reads as zeros)."""
    write_file(fs, f"{root}/p", b"a" * 300_000)
    fd = fs.open(f"{root}/p", os.O_RDWR)
    fs.pwrite(fd, 131_000, b"B" * 1000)                   # across a 128 KiB request boundary
    fs.pwrite(fd, 310_000, b"end")
    assert fs.pread(fd, 130_999, 3) == b"aBB"
    fs.close(fd)
    want = bytearray(b"a" * 300_000)
    want[131_000:132_000] = b"B" * 1000
    want += b"\0" * 10_000 + b"end"
    return {"p": File(bytes(want))}


@scenario
def posix_metadata_of_files_and_links(fs: Fs, root: str) -> Tree:
    """chmod +x, an old mtime, a relative link and a dangling one (issue 14)."""
    write_file(fs, f"{root}/run.sh", b"#!/bin/sh\necho hi\n")
    fs.chmod(f"{root}/run.sh", 0o755)
    write_file(fs, f"{root}/old.txt", b"old\n")
    fs.utime_ns(f"{root}/old.txt", 1_500_000_000_000_000_000, 1_500_000_000_000_000_000)
    fs.mkdir(f"{root}/bin")
    fs.symlink("../run.sh", f"{root}/bin/run")
    fs.symlink("no/such/target", f"{root}/dangling")
    assert fs.readlink(f"{root}/bin/run") == "../run.sh"
    assert fs.lstat(f"{root}/run.sh").perm == 0o755
    return {"run.sh": File(b"#!/bin/sh\necho hi\n", perm=0o755),
            "old.txt": File(b"old\n", mtime_ns=1_500_000_000_000_000_000),
            "bin": Dir(), "bin/run": Link("../run.sh"), "dangling": Link("no/such/target")}


@scenario
def folder_tree_renamed_and_pruned(fs: Fs, root: str) -> Tree:
    """mkdir -p a/b/c, files at each level, mv a z, rmdir of an emptied folder."""
    fs.mkdir(f"{root}/a")
    fs.mkdir(f"{root}/a/b")
    fs.mkdir(f"{root}/a/b/c")
    fs.mkdir(f"{root}/a/empty")
    for rel in ("a/1", "a/b/2", "a/b/c/3"):
        write_file(fs, f"{root}/{rel}", rel.encode())
    fs.rename(f"{root}/a", f"{root}/z")
    fs.rmdir(f"{root}/z/empty")
    assert fs.read_file(f"{root}/z/b/c/3") == b"a/b/c/3"
    return {"z": Dir(), "z/b": Dir(), "z/b/c": Dir(), "z/1": File(b"a/1"), "z/b/2": File(b"a/b/2"),
            "z/b/c/3": File(b"a/b/c/3")}


@scenario
def delete_and_recreate_the_same_name(fs: Fs, root: str) -> Tree:
    """rm f; echo new > f, twice, with a rename onto the name in between."""
    write_file(fs, f"{root}/f", b"one")
    fs.unlink(f"{root}/f")
    write_file(fs, f"{root}/f", b"two")
    write_file(fs, f"{root}/g", b"three")
    fs.rename(f"{root}/g", f"{root}/f")
    fs.unlink(f"{root}/f")
    write_file(fs, f"{root}/f", b"four")
    return {"f": File(b"four")}


@scenario
def sqlite_style_rollback_journal(fs: Fs, root: str) -> Tree:
    """A database page file and its rollback journal: write journal, fsync, write pages, fsync, delete
    the journal; seeded page writes (the pattern that gave "disk I/O error" in issue 12)."""
    rng = random.Random(1912)
    page, pages = 4096, 24
    db = bytearray(page * pages)
    fd = fs.open(f"{root}/t.db", os.O_RDWR | os.O_CREAT)
    fs.pwrite(fd, 0, bytes(db))
    fs.fsync(fd)
    for _txn in range(6):
        journal = f"{root}/t.db-journal"
        touched = rng.sample(range(pages), 4)
        jfd = fs.open(journal, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        fs.write(jfd, b"".join(bytes(db[p * page:(p + 1) * page]) for p in touched))
        fs.fsync(jfd)
        for p in touched:
            data = bytes([rng.randrange(256)]) * page
            db[p * page:(p + 1) * page] = data
            fs.pwrite(fd, p * page, data)
        fs.fsync(fd)
        fs.close(jfd)
        fs.unlink(journal)
    assert fs.pread(fd, 0, len(db)) == bytes(db)
    fs.close(fd)
    return {"t.db": File(bytes(db))}


@scenario
def many_small_files_in_folders(fs: Fs, root: str) -> Tree:
    """A small source tree: 60 files in 3 folders (issue 16's shape, small)."""
    want: Tree = {}
    for d in range(3):
        fs.mkdir(f"{root}/src{d}")
        want[f"src{d}"] = Dir()
        for i in range(20):
            data = f"// file {d}/{i}\n".encode() * (i + 1)
            write_file(fs, f"{root}/src{d}/m{i}.c", data)
            want[f"src{d}/m{i}.c"] = File(data)
    assert len(fs.listdir(f"{root}/src1")) == 20
    return want


@scenario
def seeded_random_operations_against_a_reference(fs: Fs, root: str) -> Tree:
    """A seeded generator of create/overwrite/append/truncate/rename/unlink/mkdir on a small tree,
    checked against a plain dict after every step."""
    rng = random.Random(int(os.environ.get("OAIOFS_SCENARIO_SEED", "4242")))
    ref: dict[str, bytes] = {}
    folders = [""]
    for step in range(int(os.environ.get("OAIOFS_SCENARIO_STEPS", "120"))):
        action = rng.choice(["create", "create", "overwrite", "append", "truncate", "rename", "unlink", "mkdir"])
        folder = rng.choice(folders)
        name = f"{folder}/f{rng.randrange(6)}" if folder else f"f{rng.randrange(6)}"
        data = rng.randbytes(rng.choice([0, 1, 100, 5000, 140_000]))
        if action in ("create", "overwrite") and (action == "create" or name in ref):
            write_file(fs, f"{root}/{name}", data)
            ref[name] = data
        elif action == "append" and name in ref:
            write_file(fs, f"{root}/{name}", data, APPEND)
            ref[name] += data
        elif action == "truncate" and name in ref:
            length = rng.randrange(len(ref[name]) + 100)
            fs.truncate(f"{root}/{name}", length)
            ref[name] = ref[name][:length].ljust(length, b"\0")
        elif action == "rename" and ref:
            src = rng.choice(sorted(ref))
            dst_folder = rng.choice(folders)
            dst = f"{dst_folder}/r{rng.randrange(4)}" if dst_folder else f"r{rng.randrange(4)}"
            if dst != src:
                fs.rename(f"{root}/{src}", f"{root}/{dst}")
                ref[dst] = ref.pop(src)
        elif action == "unlink" and name in ref:
            fs.unlink(f"{root}/{name}")
            del ref[name]
        elif action == "mkdir" and len(folders) < 4:
            new = f"d{len(folders)}"
            fs.mkdir(f"{root}/{new}")
            folders.append(new)
        probe = rng.choice(sorted(ref)) if ref else None
        if probe is not None:
            assert fs.read_file(f"{root}/{probe}") == ref[probe], f"step {step} ({action}): {probe}"
    want: Tree = {f: Dir() for f in folders if f}
    want.update({path: File(data) for path, data in ref.items()})
    return want
