"""Real mounts the administrator's and the script writer's way: fstab/mount(8), config file only,
``oaiofs.mounted()``, and the mount's metrics."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

import oaiofs
from oaiofs import exitcodes
from oaiofs.mount_helper import HELPERS, MARKER, install
from tests.conftest import PASSWORD, free_port, wait_until
from tests.drive.helpers import server_has

pytestmark = pytest.mark.timeout(300)
SBIN = Path("/sbin")


def _password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OAIOFS_PASSWORD"}
    env.update(extra)
    return env


def _unmount(path: Path) -> None:
    if os.path.ismount(path):
        subprocess.run(["fusermount", "-uz", str(path)], capture_output=True)


@pytest.fixture
def sbin_helpers():
    """This installation's helpers in /sbin, where mount(8) looks; what was there before is put back."""
    if os.geteuid() != 0:
        pytest.skip("needs root to write /sbin")
    before = {}
    for name in HELPERS:
        path = SBIN / name
        if path.exists():
            text = path.read_text(errors="replace")
            if MARKER not in text:
                pytest.skip(f"{path} belongs to something else")
            before[name] = text
    install(SBIN)
    yield
    for name in HELPERS:
        path = SBIN / name
        if name in before:
            path.write_text(before[name])
            path.chmod(0o755)
        else:
            path.unlink(missing_ok=True)


def test_fstab_line_mounts_and_umount_waits_for_uploads(live_server, user_api, tmp_path, sbin_helpers, mounted_drive):
    user, api = user_api
    oid = api.create_object({"_name": "Fstab"})["oaio_id"]
    mnt, cache, pw = tmp_path / "mnt", tmp_path / "cache", _password_file(tmp_path)
    mnt.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"# oaiofs\n{live_server.url}  {mnt}  fuse.oaiofs  user={user},password_file={pw},"
                     f"cache={cache},cache_size=256M,_netdev,nofail,x-systemd.automount,x-systemd.mount-timeout=30  0  0\n")
    try:
        # mount(8) with an alternative fstab (-T) mounts by mountpoint, as `mount /mnt/oaio` would with /etc/fstab
        result = subprocess.run(["mount", "-T", str(fstab), str(mnt)], capture_output=True, text=True,
                                env=_env(), timeout=120, cwd="/")
        assert result.returncode == 0, result.stderr
        assert os.path.ismount(mnt)
        assert any(line.split()[1:3] == [str(mnt), "fuse.oaiofs"] for line in open("/proc/mounts"))
        payload = os.urandom(6 << 20)
        (mnt / "Fstab" / "big.bin").write_bytes(payload)
        (mnt / "Fstab" / "small.txt").write_text("through fstab\n")
        result = subprocess.run(["umount", str(mnt)], capture_output=True, text=True, env=_env(), timeout=180)
        assert result.returncode == 0, result.stderr
        assert not os.path.ismount(mnt)
        assert server_has(api, oid, "big.bin", payload)                     # umount(8) waited for the upload
        assert server_has(api, oid, "small.txt", b"through fstab\n")
    finally:
        _unmount(mnt)
    second = mounted_drive(live_server, user)                              # empty cache: read back
    assert (second.path("Fstab", "big.bin")).read_bytes() == payload


def test_mount_t_form_and_its_errors(live_server, user_api, tmp_path, sbin_helpers):
    user, _api = user_api
    mnt, pw = tmp_path / "mnt", _password_file(tmp_path)
    mnt.mkdir()
    base = ["mount", "-t", "fuse.oaiofs", live_server.url, str(mnt)]
    try:
        bad = tmp_path / "bad"
        bad.write_text("wrong\n")
        bad.chmod(0o600)
        refused = subprocess.run(base + ["-o", f"user={user},password_file={bad},cache={tmp_path / 'c'}"],
                                 capture_output=True, text=True, env=_env(), timeout=120, cwd="/")
        assert refused.returncode != 0 and "login refused" in refused.stderr and not os.path.ismount(mnt)
        bad.chmod(0o644)
        public = subprocess.run(base + ["-o", f"user={user},password_file={bad}"], capture_output=True, text=True,
                                env=_env(), timeout=120, cwd="/")
        assert public.returncode != 0 and "chmod 600" in public.stderr
        unknown = subprocess.run(base + ["-o", f"user={user},password_file={pw},turbo"], capture_output=True,
                                 text=True, env=_env(), timeout=120, cwd="/")
        assert unknown.returncode != 0 and "unknown mount option 'turbo'" in unknown.stderr
        ok = subprocess.run(base + ["-o", f"user={user},password_file={pw},cache={tmp_path / 'c'},nofail,_netdev"],
                            capture_output=True, text=True, env=_env(), timeout=120, cwd="/")
        assert ok.returncode == 0, ok.stderr
        assert os.path.ismount(mnt) and "log:" in ok.stdout
        assert subprocess.run(["umount", str(mnt)], capture_output=True, timeout=120).returncode == 0
        assert not os.path.ismount(mnt)
    finally:
        _unmount(mnt)


def test_config_file_only_mount(live_server, user_api, tmp_path):
    user, api = user_api
    oid = api.create_object({"_name": "Configured"})["oaio_id"]
    mnt, pw = tmp_path / "oaio", _password_file(tmp_path)
    mnt.mkdir()
    xdg = tmp_path / "xdg"
    (xdg / "oaiofs").mkdir(parents=True)
    (xdg / "oaiofs" / "config.toml").write_text(textwrap.dedent(f"""
        [drives.other]
        server = "http://127.0.0.1:9"
        user = "nobody"
        mountpoint = "{tmp_path / 'elsewhere'}"

        [drives.main]
        server = "{live_server.url}"
        user = "{user}"
        password_file = "{pw}"
        mountpoint = "{mnt}"
        cache = "{tmp_path / 'cache'}"
        cache_size = "128M"
        log_format = "json"
        """))
    env = _env(XDG_CONFIG_HOME=str(xdg))
    env.pop("XDG_RUNTIME_DIR", None)
    try:
        result = subprocess.run([sys.executable, "-m", "oaiofs", "-v", "mount", str(mnt)], capture_output=True, text=True,
                                env=env, stdin=subprocess.DEVNULL, timeout=120, cwd="/")
        assert result.returncode == 0, result.stderr
        assert os.path.ismount(mnt)
        assert f"log: {tmp_path / 'cache' / 'mount.log'}" in result.stdout         # where the log goes
        assert "Warning" not in result.stdout + result.stderr                   # e.g. RuntimeDirWarning
        (mnt / "Configured" / "c.txt").write_text("from the config file\n")
        status = subprocess.run([sys.executable, "-m", "oaiofs", "status"], capture_output=True, text=True, env=env,
                                timeout=60, cwd="/")
        assert "Warning" not in status.stdout + status.stderr and str(mnt) in status.stdout
        done = subprocess.run([sys.executable, "-m", "oaiofs", "umount", "--drive", "main"], capture_output=True,
                              text=True, env=env, timeout=120, cwd="/")
        assert done.returncode == 0, done.stderr
        assert not os.path.ismount(mnt)
        assert server_has(api, oid, "c.txt", b"from the config file\n")
        def json_records() -> list[dict]:                                    # log_format = "json"
            return [json.loads(line) for line in (tmp_path / "cache" / "mount.log").read_text().splitlines()
                    if line.startswith("{")]

        records = wait_until(json_records, timeout=30, message="JSON lines in mount.log")
        assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    finally:
        _unmount(mnt)


SCRIPT = """
import os, sys, oaiofs
with oaiofs.mounted(sys.argv[1], server=sys.argv[2], user=sys.argv[3], password_file=sys.argv[4],
                    cache=sys.argv[5]) as drive:
    assert drive.is_mounted
    (drive.path / "Scripted" / "out.bin").write_bytes(bytes(range(256)) * 4096)
    status = drive.wait_synced(timeout=120)
    assert status["ops"] == [] and status["online"] is True
    print("synced", drive.status()["user"])
print("mounted after exit:", os.path.ismount(sys.argv[1]))
"""


def test_python_api_in_a_script(live_server, user_api, tmp_path, mounted_drive):
    user, api = user_api
    oid = api.create_object({"_name": "Scripted"})["oaio_id"]
    mnt = tmp_path / "m"
    mnt.mkdir()
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    try:
        result = subprocess.run([sys.executable, str(script), str(mnt), live_server.url, user,
                                 str(_password_file(tmp_path)), str(tmp_path / "c")], capture_output=True, text=True,
                                env=_env(), timeout=240, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"synced {user}" in result.stdout and "mounted after exit: False" in result.stdout
        data = bytes(range(256)) * 4096
        assert server_has(api, oid, "out.bin", data)
    finally:
        _unmount(mnt)
    assert mounted_drive(live_server, user).path("Scripted", "out.bin").read_bytes() == data


def test_python_api_failures(live_server, user_api, tmp_path):
    user, _api = user_api
    mnt, pw = tmp_path / "m", _password_file(tmp_path)
    mnt.mkdir()
    with pytest.raises(oaiofs.MountError) as wrong:
        oaiofs.mount(mnt, server=live_server.url, user=user, password="not the password", cache=tmp_path / "c1")
    assert wrong.value.code == exitcodes.LOGIN and "login refused" in wrong.value.message
    with pytest.raises(oaiofs.MountError) as unreachable:
        oaiofs.mount(mnt, server=f"http://127.0.0.1:{free_port()}", user=user, password_file=pw,
                     cache=tmp_path / "c2")
    assert unreachable.value.code == exitcodes.UNREACHABLE and "unreachable" in unreachable.value.message
    (mnt / "occupied").write_text("x")
    with pytest.raises(oaiofs.MountError) as busy:
        with oaiofs.mounted(mnt, server=live_server.url, user=user, password_file=pw, cache=tmp_path / "c3"):
            pass
    assert busy.value.code == exitcodes.MOUNTPOINT and "busy" in busy.value.message
    assert not os.path.ismount(mnt)


def test_python_api_raises_with_what_is_pending(server_factory, tmp_path):
    server = server_factory()
    user = server.add_user("pending")
    from oaiofs.client.api import ApiClient

    api = ApiClient(server.url, user, PASSWORD)
    oid = api.create_object({"_name": "Pending"})["oaio_id"]
    mnt = tmp_path / "m"
    mnt.mkdir()
    drive = oaiofs.mount(mnt, server=server.url, user=user, password_file=_password_file(tmp_path),
                         cache=tmp_path / "c")
    try:
        (mnt / "Pending").is_dir()
        server.stop()
        (mnt / "Pending" / "late.txt").write_text("queued while offline\n")
        with pytest.raises(oaiofs.PendingChanges) as pending:
            drive.wait_synced(timeout=3)
        assert pending.value.code == exitcodes.PENDING
        assert any(op.get("path") == "late.txt" for op in pending.value.pending), pending.value.pending
        with pytest.raises(oaiofs.PendingChanges):
            drive.unmount(timeout=1)
        assert drive.is_mounted                                          # kept mounted: nothing lost
        server.start(timeout=180)                                        # slow start-ups on a loaded machine
        drive.unmount(timeout=120)                                       # waits for the upload, then unmounts
        assert not drive.is_mounted
        assert server_has(api, oid, "late.txt", b"queued while offline\n")
    finally:
        _unmount(mnt)
        api.close()


def _scrape(url: str) -> dict[str, float]:
    text = requests.get(url, timeout=10).text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_mount_metrics_move_when_work_is_done(live_server, user_api, mounted_drive):
    user, api = user_api
    oid = api.create_object({"_name": "Metered"})["oaio_id"]
    payload = os.urandom(3 << 20)
    api.put_file(oid, "data.bin", payload)
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    drive = mounted_drive(live_server, user, extra_args=("--metrics-addr", f"127.0.0.1:{port}"))
    before = wait_until(lambda: _scrape(url), timeout=30, message="metrics endpoint")
    assert all(name.startswith("oaiofs_") for name in before), sorted(before)
    for name in ("oaiofs_cache_hits_total", "oaiofs_cache_misses_total", "oaiofs_download_bytes_total",
                 "oaiofs_upload_bytes_total", "oaiofs_journal_ops", "oaiofs_journal_pending_bytes",
                 "oaiofs_conflicts", "oaiofs_online", "oaiofs_cache_used_bytes"):
        assert name in before, name
    assert before["oaiofs_online"] == 1
    assert drive.path("Metered", "data.bin").read_bytes() == payload
    after = _scrape(url)
    read_ops = 'oaiofs_fuse_ops_total{op="read_into"}'
    assert after[read_ops] > before.get(read_ops, 0)
    assert after['oaiofs_fuse_op_seconds_count{op="read_into"}'] >= after[read_ops] - 1
    assert after["oaiofs_download_bytes_total"] - before["oaiofs_download_bytes_total"] >= len(payload)
    assert after["oaiofs_cache_misses_total"] > before["oaiofs_cache_misses_total"]
    with open(drive.path("Metered", "data.bin"), "rb") as fh:             # now from the drive's cache
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)       # (not the kernel's page cache)
        assert fh.read() == payload
    again = _scrape(url)
    assert again["oaiofs_cache_hits_total"] > after["oaiofs_cache_hits_total"]
    assert again["oaiofs_download_bytes_total"] == after["oaiofs_download_bytes_total"]
    drive.path("Metered", "up.bin").write_bytes(payload)
    wait_until(lambda: _scrape(url)["oaiofs_upload_bytes_total"] >= len(payload) and
               _scrape(url)["oaiofs_journal_ops"] == 0, timeout=120, message="upload counted")
    errors_before = _scrape(url).get('oaiofs_fuse_errors_total{op="getattr"}', 0)
    assert not drive.path("Metered", "missing").exists()
    assert _scrape(url)['oaiofs_fuse_errors_total{op="getattr"}'] > errors_before
    assert re.search(r"oaiofs_fuse_op_seconds_bucket\{le=\"[0-9.e+-]+\",op=\"getattr\"\}",
                     requests.get(url, timeout=10).text)
