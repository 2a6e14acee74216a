"""OaioClient keeps POSIX metadata: a seeded random tree of files (exec bits, ns mtimes) and
relative symbolic links (some dangling, some to folders) goes up with ``register_folder`` on one
device, comes down on a second device into a fresh ``client_root``, and is read through a real
mount with an empty cache; all three are compared with the reference (``os.lstat`` mode bits,
exact ``st_mtime_ns``, ``readlink``, bytes) and with ``tar c`` of the reference.

Hostile links (absolute, ``..`` climbing out, out through another link) are stored as given on
the server, shown as given by the mount, and never created by the downloading client.
"""
from __future__ import annotations

import hashlib
import io
import os
import random
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from oaiofs.client.oaio_client import OaioClient
from tests.conftest import PASSWORD, wait_until

pytestmark = pytest.mark.timeout(300)

SEED = int(os.environ.get("OAIOFS_SEED", "14"))
MODES = [0o644, 0o755, 0o600, 0o700, 0o444, 0o640, 0o750, 0o555]


def connect(server, user: str, root: Path, device: str) -> OaioClient:
    return OaioClient(f"127.0.0.1:{server.port}", {"username": user, "password": PASSWORD}, app_id="tests",
                      device_id=device, client_root=str(root))


def make_tree(root: Path, rng: random.Random) -> None:
    """Folders, files with random modes/mtimes (ns, one before 1970) and relative links, dangling too."""
    folders = [""]
    for i in range(rng.randrange(3, 7)):
        parent = rng.choice(folders)
        folders.append(f"{parent}/d{i}".lstrip("/"))
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(rng.randrange(8, 16)):
        rel = f"{rng.choice(folders)}/f{i}{rng.choice(['', '.sh', '.txt', ' x ü'])}".lstrip("/")
        (root / rel).write_bytes(rng.randbytes(rng.choice([0, 1, 511, 513, rng.randrange(20_000)])))
        files.append(rel)
    links = []
    for i in range(rng.randrange(5, 10)):
        rel = f"{rng.choice(folders)}/l{i}".lstrip("/")
        kind = rng.random()
        if kind < 0.5:
            goal = rng.choice(files)
        elif kind < 0.7:
            goal = rng.choice(folders[1:] or [""]) or "."
        else:
            goal = f"{rng.choice(folders)}/missing{i}".lstrip("/")          # dangling
        target = os.path.relpath(root / goal, (root / rel).parent)
        os.symlink(target, root / rel)
        links.append(rel)
    for j, rel in enumerate(files):
        os.chmod(root / rel, rng.choice(MODES))
        when = -1_000_000_007 if j == 0 else rng.randrange(1_000_000_000 * 10**9, 1_800_000_000 * 10**9)
        os.utime(root / rel, ns=(when, when))
    for rel in links:
        when = rng.randrange(1_000_000_000 * 10**9, 1_800_000_000 * 10**9)
        os.utime(root / rel, ns=(when, when), follow_symlinks=False)


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """path -> (kind, mode bits, mtime ns, sha256 | target) of files and links; folders by name only."""
    out: dict[str, tuple] = {}
    for folder, dirs, names in os.walk(root):
        for name in [*dirs, *names]:
            p = Path(folder) / name
            rel = p.relative_to(root).as_posix()
            if rel in skip:
                continue
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", st.st_mtime_ns, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns,
                            hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def tar_view(root: Path) -> dict[str, tuple]:
    """What GNU tar (POSIX format, ns mtimes) records of the files and links below ``root``."""
    raw = subprocess.run(["tar", "--format=posix", "--exclude=./values.json", "-cf", "-", "-C", str(root), "."],
                         check=True, capture_output=True, timeout=120).stdout
    out = {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for m in tar.getmembers():
            if m.isdir():
                continue
            data = hashlib.sha256(tar.extractfile(m).read()).hexdigest() if m.isreg() else m.linkname
            out[m.name] = (m.type, m.mode if m.isreg() else None, m.pax_headers.get("mtime", str(m.mtime)), data)
    return out


def test_random_tree_round_trips_through_two_clients_and_a_mount(live_server, make_user, mounted_drive, tmp_path):
    rng = random.Random(SEED)
    user = make_user("posixrt")
    src = tmp_path / "src"
    make_tree(src, rng)
    reference = snapshot(src)
    assert any(v[0] == "link" for v in reference.values()), f"seed {SEED}"

    a = connect(live_server, user, tmp_path / "dev-a", "a")
    obj = a.register_folder(str(src))
    assert obj is not None and a.error_message == "", a.error_message
    server = {f["path"]: f for f in a.api.get_object(obj.oaio_id)["files"]}
    for rel, entry in reference.items():
        if entry[0] == "link":
            assert server[rel]["kind"] == "link" and server[rel]["target"] == entry[2], rel
        elif entry[0] == "file":
            assert (server[rel]["mode"], server[rel]["mtime_ns"]) == entry[1:3], rel

    b = connect(live_server, user, tmp_path / "dev-b", "b")
    assert b.synchronize_with_server_if_online(), b.error_message
    down = b.files_root(obj.oaio_id)
    assert snapshot(down) == reference, f"seed {SEED}"

    drive = mounted_drive(live_server, user)                 # empty cache: everything from the server
    top = drive.path(obj.oaio_id)
    wait_until(lambda: top.is_dir(), timeout=60, message="object folder on the mount")
    assert snapshot(top, skip=("values.json",)) == reference, f"seed {SEED}"
    assert tar_view(top) == tar_view(src)

    # changes on device a: chmod/touch only, a new link target, a link removed, a new dangling link
    files = sorted(p for p, v in reference.items() if v[0] == "file")
    links = sorted(p for p, v in reference.items() if v[0] == "link")
    os.chmod(src / files[1], 0o711)
    os.utime(src / files[2], ns=(0, 1_234_567_890_123_456_789))
    (src / links[0]).unlink()
    os.symlink("elsewhere/new", src / links[0])
    (src / links[1]).unlink()
    os.symlink("nowhere", src / "fresh-link")
    versions = {f["path"]: f["version"] for f in a.api.get_object(obj.oaio_id)["files"]}
    assert a.update_folder(obj.oaio_id) is not None and a.error_message == "", a.error_message
    after = {f["path"]: f for f in a.api.get_object(obj.oaio_id)["files"]}
    assert after[files[1]]["version"] == versions[files[1]]     # metadata only: the bytes stayed
    assert links[1] not in after and after["fresh-link"]["target"] == "nowhere"
    reference = snapshot(src)
    assert a.update_folder(obj.oaio_id) is not None and a.sync_report.uploaded == []   # nothing left to send
    assert b.synchronize_with_server_if_online(), b.error_message
    assert snapshot(down) == reference
    fresh = mounted_drive(live_server, user)
    assert snapshot(fresh.path(obj.oaio_id), skip=("values.json",)) == reference

    # and back: device b changes modes, times and links; device a's own folder follows
    os.chmod(down / files[3], 0o700)
    os.utime(down / files[4], ns=(0, 1_111_111_111_222_222_222))
    os.symlink(os.path.relpath(down / files[5], down / files[0].rpartition("/")[0]),
               down / files[0].rpartition("/")[0] / "from-b")
    assert b.update_folder(obj.oaio_id) is not None and b.error_message == "", b.error_message
    assert a.synchronize_with_server_if_online(), a.error_message
    assert snapshot(src) == snapshot(down)
    a.close()
    b.close()


def test_hostile_links_are_stored_as_given_but_not_created_by_a_client(live_server, make_user, mounted_drive,
                                                                      tmp_path):
    user = make_user("hostile")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "ok.txt").write_text("ok")
    hostile = {"abs": "/etc/passwd", "up": "../../../../outside", "sub/hop": "..",
               "sub/chain": "hop/../.."}
    for rel, target in hostile.items():
        os.symlink(target, src / rel)
    os.symlink("../ok.txt", src / "sub" / "fine")
    a = connect(live_server, user, tmp_path / "dev-a", "a")
    obj = a.register_folder(str(src))
    assert obj is not None and a.error_message == "", a.error_message
    server = {f["path"]: f for f in a.api.get_object(obj.oaio_id)["files"]}
    assert {p: server[p]["target"] for p in hostile} == hostile                      # stored verbatim

    b = connect(live_server, user, tmp_path / "dev-b", "b")
    assert not b.synchronize_with_server_if_online()
    down = b.files_root(obj.oaio_id)
    for rel in ("abs", "up", "sub/chain"):        # 'sub/chain' is inside by name, outside through 'sub/hop'
        assert not os.path.lexists(down / rel), rel
        assert rel in b.error_message
    assert os.readlink(down / "sub" / "hop") == ".."              # the object's own folder: inside
    assert os.readlink(down / "sub" / "fine") == "../ok.txt" and (down / "sub" / "fine").read_text() == "ok"
    # a second sync does not delete the refused links on the server, nor trip over the created ones
    b.error_message = ""
    assert b.update_object(obj.oaio_id, {"touched": 1}) is not None
    assert b.update_folder(obj.oaio_id) is not None
    server = {f["path"]: f for f in a.api.get_object(obj.oaio_id)["files"]}
    assert {p: server[p]["target"] for p in hostile} == hostile
    assert "symbolic link" not in b.error_message and "missing" not in b.error_message, b.error_message
    assert not os.path.lexists(down / "sub" / "chain")
    # the mount shows every link as stored and follows none of them on its own
    drive = mounted_drive(live_server, user)
    top = drive.path(obj.oaio_id)
    wait_until(lambda: top.is_dir(), timeout=60, message="object folder on the mount")
    assert {rel: os.readlink(top / rel) for rel in hostile} == hostile
    a.close()
    b.close()
