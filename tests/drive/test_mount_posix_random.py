"""Randomized (seeded) metadata operations on a mount vs the same operations on a local reference tree."""
from __future__ import annotations

import os
import random
import stat

import pytest

from tests.conftest import wait_until
from tests.drive.helpers import mount_status

pytestmark = pytest.mark.timeout(300)
SEED = int(os.environ.get("OAIOFS_TEST_SEED", "1414"))


def _snapshot(root, with_dir_times=False):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns if with_dir_times else None)
            else:
                try:
                    f = open(p, "rb")
                except OSError as err:
                    raise OSError(err.errno, f"open {rel}: {err.strerror}") from err
                with f:
                    try:
                        out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, f.read())
                    except OSError as err:
                        raise OSError(err.errno, f"read {rel}: {err.strerror}") from err
    return out


def _apply(rng, roots, names):
    """One random operation applied identically under every root; returns a description."""
    ref = roots[0]
    existing = sorted(os.path.relpath(os.path.join(d, n), ref) for d, ds, fs in os.walk(ref) for n in ds + fs)
    dirs = [""] + [p for p in existing if os.path.isdir(os.path.join(ref, p)) and not os.path.islink(os.path.join(ref, p))]
    files = [p for p in existing if os.path.isfile(os.path.join(ref, p)) and not os.path.islink(os.path.join(ref, p))]
    links = [p for p in existing if os.path.islink(os.path.join(ref, p))]
    kind = rng.choice(["write", "write", "chmod", "utime", "symlink", "mkdir", "unlink", "rename", "dirtime"])
    new = os.path.join(rng.choice(dirs), rng.choice(names))
    if os.path.lexists(os.path.join(ref, new)) and kind in ("symlink", "mkdir"):
        return "skip"
    if kind == "write" and not os.path.isdir(os.path.join(ref, new)):
        data = rng.randbytes(rng.randrange(0, 3000))
        ns = rng.randrange(0, 2 * 10**18)
        for r in roots:
            target = os.path.join(r, new)
            if os.path.islink(target):
                os.unlink(target)
            with open(target, "wb") as f:
                f.write(data)
            os.utime(target, ns=(0, ns))        # the two clocks differ: an explicit time (cp -p, tar)
        return f"write {new}"
    if kind == "chmod" and files + dirs[1:]:
        path, mode = rng.choice(files + dirs[1:]), rng.choice([0o600, 0o644, 0o755, 0o700, 0o640, 0o1777])
        for r in roots:
            os.chmod(os.path.join(r, path), mode)
        return f"chmod {path} {mode:o}"
    if kind == "utime" and files:
        path, ns = rng.choice(files), rng.randrange(-10**17, 4 * 10**18)
        for r in roots:
            os.utime(os.path.join(r, path), ns=(0, ns))
        return f"utime {path} {ns}"
    if kind == "symlink":
        target = rng.choice(["a", "../b", "/abs/path", "x/y/z", "."])
        for r in roots:
            os.symlink(target, os.path.join(r, new))
        return f"symlink {new} -> {target}"
    if kind == "mkdir":
        for r in roots:
            os.mkdir(os.path.join(r, new))
        return f"mkdir {new}"
    if kind == "unlink" and files + links:
        path = rng.choice(files + links)
        for r in roots:
            os.unlink(os.path.join(r, path))
        return f"unlink {path}"
    if kind == "rename" and files + links:
        src = rng.choice(files + links)
        dst = os.path.join(rng.choice(dirs), rng.choice(names))
        if os.path.isdir(os.path.join(ref, dst)) or dst == src:
            return "skip"
        for r in roots:
            os.rename(os.path.join(r, src), os.path.join(r, dst))
        return f"rename {src} {dst}"
    return "skip"


def test_random_metadata_ops_match_a_local_tree(live_server, make_user, mounted_drive, tmp_path):
    rng = random.Random(SEED)
    user = make_user("rand")
    drive = mounted_drive(live_server, user)
    drive.path("R").mkdir()
    wait_until(lambda: drive.path("R", "values.json").exists(), message="object created")
    mount_root, ref_root = drive.path("R", "tree"), tmp_path / "ref"
    os.mkdir(mount_root)
    os.mkdir(ref_root)
    names = ["a", "b", "c", "d.sh", "e"]
    done = []
    for step in range(70):
        done.append(_apply(rng, [str(ref_root), str(mount_root)], names))
        if step % 10 == 9:
            # settle first: reading a file renamed while its move is still queued can 404 (a
            # read-after-rename race outside this test's subject, left to the write-consistency work)
            wait_until(lambda: not mount_status(drive.mountpoint).get("ops"), timeout=120, message="journal empty")
            try:
                got = _snapshot(mount_root)
            except OSError as err:
                raise AssertionError(f"seed {SEED}, after {done}: {err!r}") from err
            assert got == _snapshot(ref_root), (SEED, done)
    for i, (dirpath, _dirs, _files) in enumerate(sorted(os.walk(ref_root), key=lambda w: -len(w[0]))):
        rel = os.path.relpath(dirpath, ref_root)
        for root in (ref_root, mount_root):
            os.utime(os.path.join(root, rel), ns=(0, 1_600_000_000_000_000_000 + i))
    expected = _snapshot(ref_root, with_dir_times=True)
    assert _snapshot(mount_root, with_dir_times=True) == expected, (SEED, done)
    wait_until(lambda: not mount_status(drive.mountpoint).get("ops"), timeout=120, message="journal empty")
    fresh = mounted_drive(live_server, user)
    assert _snapshot(fresh.path("R", "tree"), with_dir_times=True) == expected, (SEED, done)
