"""POSIX metadata through real mounts: exec bits, mtimes (ns), symbolic links, parent folder times.

Every test that writes ends by reading back through a second mount with an empty cache
(and, where it matters, a mount of another user).
"""
from __future__ import annotations

import os
import stat
import subprocess

import pytest

from oaiofs.client.api import ApiClient
from tests.conftest import PASSWORD, wait_until
from tests.drive.helpers import server_file

pytestmark = pytest.mark.timeout(240)


def _settled(drive) -> bool:
    """The mount's journal has nothing left to send."""
    from tests.drive.helpers import mount_status
    status = mount_status(drive.mountpoint)
    return not status.get("ops") and status.get("pending", 0) in (0, None)


def _wait_synced(api, oid, path, pred, what):
    wait_until(lambda: (f := server_file(api, oid, path)) is not None and pred(f), timeout=60, message=what)


def test_chmod_exec_runs_and_is_seen_by_a_U_subscriber_and_a_reader(live_server, make_user, api_for,
                                                                      mounted_drive):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    api = api_for(alice)
    oid = api.create_object({"_name": "Scripts"})["oaio_id"]
    api.set_subscription(oid, bob, "U")
    api.set_subscription(oid, carol, "r")
    drive = mounted_drive(live_server, alice)
    script = drive.path("Scripts", "s.sh")
    script.write_text("#!/bin/sh\necho ran-ok\n")
    assert stat.S_IMODE(script.stat().st_mode) == 0o644 & ~_umask()
    subprocess.run(["chmod", "+x", str(script)], check=True)
    assert script.stat().st_mode & 0o111 == 0o111
    out = subprocess.run([str(script)], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout == "ran-ok\n"
    _wait_synced(api, oid, "s.sh", lambda f: f["mode"] & 0o111 == 0o111, "exec bits on the server")

    fresh = mounted_drive(live_server, alice)                     # same user, empty cache
    assert fresh.path("Scripts", "s.sh").stat().st_mode & 0o111 == 0o111
    assert subprocess.run([str(fresh.path("Scripts", "s.sh"))], capture_output=True, text=True,
                          timeout=30).stdout == "ran-ok\n"
    mode_b = stat.S_IMODE(mounted_drive(live_server, bob).path("Scripts", "s.sh").stat().st_mode)
    assert mode_b & 0o111 == 0o111 and mode_b & 0o200
    drive_c = mounted_drive(live_server, carol)
    mode_c = stat.S_IMODE(drive_c.path("Scripts", "s.sh").stat().st_mode)
    assert mode_c & 0o111 == 0o111 and mode_c & 0o222 == 0, oct(mode_c)
    with pytest.raises(PermissionError):                          # the reader cannot change it
        os.chmod(drive_c.path("Scripts", "s.sh"), 0o777)


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_touch_date_and_symlinks_on_another_mount(live_server, make_user, api_for, mounted_drive):
    user = make_user("touch")
    api = api_for(user)
    oid = api.create_object({"_name": "T"})["oaio_id"]
    drive = mounted_drive(live_server, user)
    f = drive.path("T", "f")
    f.write_bytes(b"data")
    subprocess.run(["touch", "-d", "@1500000000", str(f)], check=True)
    assert f.stat().st_mtime_ns == 1_500_000_000 * 10**9
    os.utime(f, ns=(0, 1_234_567_890_123_456_789))
    assert f.stat().st_mtime_ns == 1_234_567_890_123_456_789
    subprocess.run(["touch", "-d", "@1500000000", str(f)], check=True)
    drive.path("T", "sub").mkdir()
    os.symlink("../f", drive.path("T", "sub", "rel"))
    os.symlink("/etc/hostname", drive.path("T", "abs"))
    os.symlink("f", drive.path("T", "lnk"))
    assert os.readlink(drive.path("T", "sub", "rel")) == "../f"
    assert drive.path("T", "sub", "rel").read_bytes() == b"data"       # the kernel follows it
    assert stat.S_ISLNK(os.lstat(drive.path("T", "abs")).st_mode)
    ls = subprocess.run(["ls", "-l", str(drive.path("T"))], capture_output=True, text=True, check=True).stdout
    assert "abs -> /etc/hostname" in ls and "lnk -> f" in ls
    _wait_synced(api, oid, "sub/rel", lambda e: e["kind"] == "link" and e["target"] == "../f", "link on server")
    _wait_synced(api, oid, "f", lambda e: e["mtime_ns"] == 1_500_000_000 * 10**9, "mtime on server")

    fresh = mounted_drive(live_server, user)
    assert fresh.path("T", "f").stat().st_mtime_ns == 1_500_000_000 * 10**9
    assert fresh.path("T", "f").read_bytes() == b"data"
    assert os.readlink(fresh.path("T", "sub", "rel")) == "../f"
    assert os.readlink(fresh.path("T", "abs")) == "/etc/hostname"
    assert fresh.path("T", "lnk").read_bytes() == b"data"
    assert stat.S_ISLNK(os.lstat(fresh.path("T", "lnk")).st_mode)


def _make_tree(root):
    """A source tree with modes, old mtimes (ns), symlinks and an empty folder."""
    (root / "bin").mkdir(parents=True)
    (root / "doc" / "empty").mkdir(parents=True)
    (root / "bin" / "run.sh").write_text("#!/bin/sh\necho run\n")
    os.chmod(root / "bin" / "run.sh", 0o755)
    (root / "doc" / "readme.txt").write_bytes(b"hello\n" * 100)
    (root / "doc" / "private.txt").write_bytes(b"secret")
    os.chmod(root / "doc" / "private.txt", 0o600)
    (root / "big.bin").write_bytes(os.urandom(3 << 20))
    os.symlink("doc/readme.txt", root / "readme")
    os.symlink("../bin/run.sh", root / "doc" / "run-link")
    os.symlink("/nonexistent/abs", root / "dangling")
    for i, p in enumerate(sorted(root.rglob("*"))):
        os.utime(p, ns=(1_400_000_000_000_000_000, 1_400_000_000_123_456_789 + i * 10**9), follow_symlinks=False)
    for p in (root / "doc" / "empty", root / "doc", root / "bin"):
        os.utime(p, ns=(0, 1_300_000_000_987_654_321))


def _snapshot(root):
    """path -> (type, mode bits, mtime ns, content/target) of a tree, without following links."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = os.lstat(p)
        rel = str(p.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", os.readlink(p))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, p.read_bytes())
    return out


def _wait_mount_idle(drive):
    from tests.drive.helpers import mount_status
    wait_until(lambda: not mount_status(drive.mountpoint).get("ops"), timeout=120, message="journal empty")


def test_cp_tar_rsync_keep_modes_times_and_links(live_server, make_user, api_for, mounted_drive, tmp_path):
    user = make_user("tools")
    api = api_for(user)
    api.create_object({"_name": "Tools"})
    src = tmp_path / "src"
    _make_tree(src)
    expected = _snapshot(src)
    drive = mounted_drive(live_server, user)
    top = drive.path("Tools")
    subprocess.run(["cp", "-a", str(src), str(top / "cp")], check=True, timeout=120)
    tarball = tmp_path / "t.tar"
    subprocess.run(["tar", "--format=posix", "-cf", str(tarball), "-C", str(src), "."], check=True, timeout=60)
    (top / "tar").mkdir()
    subprocess.run(["tar", "xf", str(tarball), "-C", str(top / "tar")], check=True, timeout=120)
    subprocess.run(["rsync", "-a", f"{src}/", f"{top / 'rsync'}/"], check=True, timeout=120)
    for name in ("cp", "tar", "rsync"):
        assert _snapshot(top / name) == expected, name
    again = subprocess.run(["rsync", "-a", "--itemize-changes", f"{src}/", f"{top / 'rsync'}/"],
                           capture_output=True, text=True, check=True, timeout=120)
    assert again.stdout == "", again.stdout                    # nothing to transfer, nothing to fix
    _wait_mount_idle(drive)

    fresh = mounted_drive(live_server, user)                    # empty cache: all from the server
    for name in ("cp", "tar", "rsync"):
        assert _snapshot(fresh.path("Tools", name)) == expected, name
    third = subprocess.run(["rsync", "-a", "--itemize-changes", f"{src}/", f"{fresh.path('Tools', 'rsync')}/"],
                           capture_output=True, text=True, check=True, timeout=120)
    assert third.stdout == "", third.stdout


def test_git_clone_with_symlinks_and_exec_bits_is_clean(live_server, make_user, mounted_drive, tmp_path):
    user = make_user("git")
    repo = tmp_path / "repo"
    _make_tree(repo)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(repo)], check=True, timeout=60)
    subprocess.run([*git, "-C", str(repo), "add", "-A"], check=True, timeout=60)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "tree"], check=True, timeout=60)
    drive = mounted_drive(live_server, user)
    drive.path("Repo").mkdir()
    wait_until(lambda: drive.path("Repo", "values.json").exists(), message="object created")
    clone = drive.path("Repo", "clone")
    subprocess.run([*git, "clone", "-q", str(repo), str(clone)], check=True, timeout=300)
    cfg = subprocess.run(["git", "-C", str(clone), "config", "--get-regexp", r"core\.(symlinks|filemode)"],
                         capture_output=True, text=True, timeout=60).stdout
    assert "core.symlinks false" not in cfg and "core.filemode false" not in cfg, cfg
    assert os.readlink(clone / "readme") == "doc/readme.txt"
    assert os.access(clone / "bin" / "run.sh", os.X_OK)
    status = subprocess.run(["git", "-C", str(clone), "status", "--porcelain"], capture_output=True, text=True,
                            check=True, timeout=120).stdout
    assert status == "", status
    _wait_mount_idle(drive)

    fresh = mounted_drive(live_server, user)
    again = fresh.path("Repo", "clone")
    assert os.readlink(again / "doc" / "run-link") == "../bin/run.sh"
    assert stat.S_IMODE(os.stat(again / "bin" / "run.sh").st_mode) & 0o111 == 0o111
    status = subprocess.run(["git", "-C", str(again), "status", "--porcelain"], capture_output=True, text=True,
                            check=True, timeout=120).stdout
    assert status == "", status


def _server_stored_bytes(server) -> int:
    """Bytes the server process (and its descendants) wrote (``wchar``): every received file byte is
    staged to disk before it is committed, so an upload of N bytes moves this by at least N."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(open(f"/proc/{entry}/stat").read().rpartition(")")[2].split()[1])
            except OSError:
                continue
    pids, todo = [], [server.proc.pid]
    while todo:                                   # the process and all its descendants
        pid = todo.pop()
        pids.append(pid)
        todo += [child for child, parent in parents.items() if parent == pid]
    total = 0
    for pid in pids:
        for line in open(f"/proc/{pid}/io"):     # a worker that ended meanwhile would raise: none do
            if line.startswith("wchar:"):
                total += int(line.split()[1])
    return total


def test_chmod_and_utime_of_a_100_mib_file_send_no_bytes(server_factory, mounted_drive, tmp_path):
    server = server_factory()
    user = server.add_user("big")
    drive = mounted_drive(server, user)
    drive.path("Big").mkdir()
    wait_until(lambda: drive.path("Big", "values.json").exists(), message="object created")
    before_write = _server_stored_bytes(server)
    big = drive.path("Big", "big.bin")
    with open(big, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(100):
            f.write(chunk)
    api = ApiClient(server.url, user, PASSWORD)
    oid = next(o["oaio_id"] for o in api.list_objects()[0])
    _wait_synced(api, oid, "big.bin", lambda f: f["size"] == 100 << 20, "the upload on the server")
    _wait_mount_idle(drive)
    upload_cost = _server_stored_bytes(server) - before_write
    assert upload_cost >= 100 << 20                      # the counter sees an upload (same-run baseline)

    before_meta = _server_stored_bytes(server)
    os.chmod(big, 0o750)
    os.utime(big, ns=(0, 1_500_000_000_000_000_007))
    subprocess.run(["touch", "-a", str(big)], check=True)          # atime only: mtime is UTIME_OMIT
    _wait_synced(api, oid, "big.bin", lambda f: f["mode"] == 0o750 and f["mtime_ns"] == 1_500_000_000_000_000_007,
                 "mode and mtime on the server")
    _wait_mount_idle(drive)
    meta_cost = _server_stored_bytes(server) - before_meta
    print(f"server bytes stored: upload {upload_cost}, chmod+utime+touch -a {meta_cost}")
    assert meta_cost < 2 << 20, (meta_cost, upload_cost)           # a few requests, not the file

    fresh = mounted_drive(server, user)
    st = fresh.path("Big", "big.bin").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_size) == (0o750, 1_500_000_000_000_000_007, 100 << 20)
