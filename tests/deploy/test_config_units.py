"""Config file, password files, mount(8) helper options and systemd units (no mounts: fast)."""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from oaiofs import exitcodes
from oaiofs.cli import build_parser
from oaiofs.config import ConfigError, load_config, read_password_file
from oaiofs.drive_commands import resolve_mount_args
from oaiofs.mount_helper import HelperError, helper_script, install, mount_argv, uninstall
from oaiofs.systemd import executable, unit_text

CONFIG = """
[defaults]
cache_size = "512M"
poll = 7

[drives.home]
server = "http://127.0.0.1:8470"
user = "alice"
password_file = "{pw}"
mountpoint = "{mnt}"

[drives.work]
server = "http://127.0.0.1:9999"
user = "bob"
cache_size = "1G"
allow_other = true
"""


def _mount_ns(config: Path, *argv: str) -> argparse.Namespace:
    return build_parser("mount").parse_args(["mount", *argv, "--config", str(config)])


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    pw = tmp_path / "alice.pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o600)
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(pw=pw, mnt=tmp_path / "oaio"))
    return path


def test_named_drives_defaults_and_flags_override(config_file: Path, tmp_path: Path) -> None:
    home = resolve_mount_args(_mount_ns(config_file, "--drive", "home"))
    assert (home.server, home.user, home.mountpoint) == ("http://127.0.0.1:8470", "alice", tmp_path / "oaio")
    assert home.cache_size == 512 << 20 and home.poll == 7.0 and home.allow_other is False
    assert read_password_file(home.password_file) == "s3cret"
    by_mountpoint = resolve_mount_args(_mount_ns(config_file, str(tmp_path / "oaio")))
    assert by_mountpoint.user == "alice"                          # the drive whose mountpoint it is
    work = resolve_mount_args(_mount_ns(config_file, str(tmp_path / "w"), "--drive", "work",
                                        "--user", "carol", "--cache-size", "3G", "--poll", "1"))
    assert (work.server, work.user, work.cache_size, work.poll, work.allow_other) == \
        ("http://127.0.0.1:9999", "carol", 3 << 30, 1.0, True)   # flags win, the rest from [drives.work]
    with pytest.raises(ConfigError, match="no drive 'nope'.*home, work"):
        resolve_mount_args(_mount_ns(config_file, "--drive", "nope"))
    with pytest.raises(ConfigError, match="no server"):              # two drives, none chosen
        resolve_mount_args(_mount_ns(config_file, str(tmp_path / "elsewhere")))


def test_single_top_level_drive_and_absent_default_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("OAIOFS_CONFIG", raising=False)
    assert load_config().drives == {}                                 # no file: an empty config
    (tmp_path / "xdg" / "oaiofs").mkdir(parents=True)
    (tmp_path / "xdg" / "oaiofs" / "config.toml").write_text(
        'server = "http://127.0.0.1:1"\nuser = "u"\nmountpoint = "~/m"\ncache = "$HOME/c"\n')
    ns = resolve_mount_args(build_parser("mount").parse_args(["mount"]))
    assert ns.server == "http://127.0.0.1:1" and ns.mountpoint == Path(os.path.expanduser("~/m"))
    assert ns.cache == Path(os.path.expanduser("~")) / "c"


@pytest.mark.parametrize("text, message", [
    ("server = 1", "server must be a str"),
    ("sever = 'x'", "unknown key 'sever'"),
    ("[drives]\nx = 1", "drives.x must be a table"),
    ("server = ", "not valid TOML"),
    ("cache_size = 'lots'", "not a size"),
])
def test_bad_config_files_get_precise_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        resolve_mount_args(_mount_ns(path, str(tmp_path)))


def test_config_fuzz_never_crashes(tmp_path: Path) -> None:
    """Random TOML-ish documents: parsed or refused with ConfigError, nothing else."""
    rng = random.Random(18)
    keys = ["server", "user", "password_file", "mountpoint", "cache", "cache_size", "poll", "allow_other", "bogus"]
    values = ['"x"', "1", "2.5", "true", '"~/p"', '"1G"', "[1]", "{a=1}", '""']
    path = tmp_path / "c.toml"
    for _ in range(300):
        lines = [f"{rng.choice(keys)} = {rng.choice(values)}" for _ in range(rng.randint(0, 4))]
        if rng.random() < 0.5:
            lines.append(f"[drives.{rng.choice(['a', 'b'])}]")
            lines += [f"{rng.choice(keys)} = {rng.choice(values)}" for _ in range(rng.randint(0, 3))]
        path.write_text("\n".join(lines))
        try:
            resolve_mount_args(_mount_ns(path, str(tmp_path / "m")))
        except ConfigError:
            pass


def test_password_file_must_be_private(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("secret\r\n")
    pw.chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable by other users \(mode 0644\).*chmod 600"):
        read_password_file(pw)
    pw.chmod(0o640)
    with pytest.raises(ConfigError, match="mode 0640"):
        read_password_file(pw)
    pw.chmod(0o600)
    assert read_password_file(pw) == "secret"
    pw.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        read_password_file(pw)
    with pytest.raises(ConfigError, match="does not exist"):
        read_password_file(tmp_path / "missing")
    with pytest.raises(ConfigError, match="not a regular file"):
        read_password_file(tmp_path)


def test_cli_refuses_a_0644_password_file_without_mounting(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    pw.chmod(0o644)
    (tmp_path / "m").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "OAIOFS_PASSWORD"}
    result = subprocess.run([sys.executable, "-m", "oaiofs", "mount", str(tmp_path / "m"), "--server",
                             "http://127.0.0.1:9", "--user", "u", "--password-file", str(pw)],
                            capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=60, cwd="/")
    assert result.returncode == exitcodes.USAGE
    assert "readable by other users (mode 0644)" in result.stderr and "chmod 600" in result.stderr
    assert not os.path.ismount(tmp_path / "m")


def test_mount_helper_options_fstab_form() -> None:
    argv = mount_argv("http://127.0.0.1:8470", "/mnt/o", [
        "user=alice", "password_file=/etc/oaiofs/alice.pw", "cache=/var/cache/o", "cache_size=4G", "allow_other",
        "_netdev", "nofail", "x-systemd.automount", "x-systemd.idle-timeout=60", "noauto", "defaults", "rw",
        "nosuid", "nodev", "metrics_addr=127.0.0.1:9470", "comment=x"])
    assert argv == ["mount", "/mnt/o", "--server", "http://127.0.0.1:8470", "--user", "alice",
                    "--password-file", "/etc/oaiofs/alice.pw", "--cache", "/var/cache/o", "--cache-size", "4G",
                    "--allow-other", "--metrics-addr", "127.0.0.1:9470"]
    assert mount_argv("home", "/m", []) == ["mount", "/m", "--drive", "home"]
    assert mount_argv("oaiofs", "/m", []) == ["mount", "/m"]
    with pytest.raises(HelperError, match="unknown mount option 'frobnicate'"):
        mount_argv("http://h", "/m", ["frobnicate"])
    assert mount_argv("http://h", "/m", ["frobnicate"], sloppy=True) == ["mount", "/m", "--server", "http://h"]
    with pytest.raises(HelperError, match="password_file"):
        mount_argv("http://h", "/m", ["password=hunter2"])
    with pytest.raises(HelperError, match="read-only"):
        mount_argv("http://h", "/m", ["ro"])
    with pytest.raises(HelperError, match="needs a value"):
        mount_argv("http://h", "/m", ["user="])


def test_mount_helper_install_refuses_foreign_files(tmp_path: Path) -> None:
    paths = install(tmp_path)
    assert [p.name for p in paths] == ["mount.fuse.oaiofs", "umount.fuse.oaiofs"]
    assert paths[0].read_text() == helper_script("mount") and os.access(paths[0], os.X_OK)
    assert paths[0].read_text().startswith(f"#!{sys.executable}\n")
    foreign = tmp_path / "mount.fuse.oaiofs"
    foreign.write_text("#!/bin/sh\necho someone else's\n")
    with pytest.raises(HelperError, match="not written by oaiofs"):
        install(tmp_path)
    install(tmp_path, force=True)
    assert [p.name for p in uninstall(tmp_path)] == ["mount.fuse.oaiofs", "umount.fuse.oaiofs"]
    assert list(tmp_path.iterdir()) == []


def test_helper_rejects_bad_calls_with_usage_code(tmp_path: Path) -> None:
    install(tmp_path)
    result = subprocess.run([str(tmp_path / "mount.fuse.oaiofs"), "http://127.0.0.1:9", str(tmp_path), "-o",
                             "user=u,frobnicate"], capture_output=True, text=True, timeout=60)
    assert result.returncode == exitcodes.USAGE and "unknown mount option 'frobnicate'" in result.stderr


def test_systemd_units_reference_this_installation() -> None:
    exe = executable()
    assert Path(exe).is_file() and Path(exe).parent == Path(sys.executable).parent
    server = unit_text("server")
    assert f"ExecStart={exe} serve " in server and "--db ${OAIOFS_DB_URL}" in server and "--blobs ${OAIOFS_BLOBS_URL}" in server
    assert "EnvironmentFile=/etc/oaiofs/server.env" in server
    for option in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                   "DynamicUser=yes"):
        assert option in server
    mount = unit_text("mount")
    assert "After=network-online.target" in mount and "Wants=network-online.target" in mount
    assert "Restart=on-failure" in mount
    assert f"ExecStart={exe} mount --foreground" in mount and f"ExecStop={exe} umount" in mount and "%i" in mount
    named = unit_text("mount", "home")
    assert "--drive home" in named and "%i" not in named
    env = unit_text("server-env")
    assert "OAIOFS_DB_URL=" in env and "OAIOFS_BLOBS_URL=" in env
    printed = subprocess.run([sys.executable, "-m", "oaiofs", "systemd-unit", "mount", "home"], capture_output=True,
                             text=True, timeout=60, cwd="/")
    assert printed.returncode == 0 and printed.stdout == named


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    units = {"oaiofs-server.service": unit_text("server"), "oaiofs-mount@home.service": unit_text("mount")}
    for name, text in units.items():
        (tmp_path / name).write_text(text)
        result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / name)], capture_output=True, text=True,
                                timeout=120)
        complaints = [line for line in (result.stderr + result.stdout).splitlines() if "oaiofs" in line]
        assert result.returncode == 0 and not complaints, result.stderr
    # the check has teeth: an unknown key is reported
    (tmp_path / "broken.service").write_text(units["oaiofs-server.service"].replace("Type=exec", "Type=exec\nBogus=1"))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "broken.service")], capture_output=True,
                            text=True, timeout=120)
    assert "Bogus" in result.stderr
