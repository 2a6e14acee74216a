"""``mount -t fuse.oaiofs`` and ``/etc/fstab``: the ``mount.fuse.oaiofs`` / ``umount.fuse.oaiofs`` helpers.

``oaiofs mount-helper install`` writes two small scripts into ``/sbin`` (where
mount(8) looks for ``mount.<type>``; ``fuse.oaiofs`` finds ``mount.fuse.oaiofs``
before the generic ``mount.fuse``), each running *this* installation's interpreter.
mount(8) calls ``mount.fuse.oaiofs SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS]``;
the helper turns the options into ``oaiofs mount`` flags and returns once mounted
(the mount process keeps running in the background). umount(8) calls
``umount.fuse.oaiofs MOUNTPOINT [-flnrv]``, which is ``oaiofs umount``: it waits
for pending uploads first (``-f``: don't wait; ``-l``: lazy).

SOURCE is the server URL, or the name of a drive in the config file (``oaiofs``
alone: the config file's default drive).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from . import exitcodes

MARKER = "# written by `oaiofs mount-helper install`"
HELPERS = ("mount.fuse.oaiofs", "umount.fuse.oaiofs")
DEFAULT_DIR = Path("/sbin")
# -o name=value -> `oaiofs mount` flag (value options) / flag alone (switches)
VALUE_OPTIONS = {"user": "--user", "password_file": "--password-file", "cache": "--cache",
                 "cache_size": "--cache-size", "attr_timeout": "--attr-timeout", "entry_timeout": "--entry-timeout",
                 "poll": "--poll", "metrics_addr": "--metrics-addr", "log_format": "--log-format",
                 "drive": "--drive", "config": "--config", "upload_parallel": "--upload-parallel"}
SWITCH_OPTIONS = {"allow_other": "--allow-other", "no_xattrs": "--no-xattrs"}
# mount(8)/fstab/systemd options that concern mount(8) or systemd, not the file system
PASSED_OVER = {"defaults", "auto", "noauto", "user", "users", "nouser", "owner", "group", "_netdev", "nofail",
               "rw", "suid", "nosuid", "dev", "nodev", "exec", "noexec", "async", "sync", "atime", "noatime",
               "relatime", "strictatime", "nodiratime", "diratime", "lazytime", "nolazytime", "silent", "loud"}
PASSED_OVER_PREFIXES = ("x-", "comment=", "uhelper=", "helper=")


class HelperError(Exception):
    """Options the helper cannot use (the message says which)."""


def split_options(text: str) -> list[str]:
    """``a=1,b,c=x`` -> items (empty items dropped)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def mount_argv(source: str, mountpoint: str, options: list[str], sloppy: bool = False) -> list[str]:
    """The ``oaiofs mount`` arguments for mount(8)'s SOURCE, MOUNTPOINT and ``-o`` items."""
    argv = ["mount", mountpoint]
    if "://" in source:
        argv += ["--server", source]
    elif source and source != "oaiofs":
        argv += ["--drive", source]
    for item in options:
        name, eq, value = item.partition("=")
        if name in VALUE_OPTIONS and eq:
            if not value:
                raise HelperError(f"option {name}= needs a value")
            argv += [VALUE_OPTIONS[name], value]
        elif name in SWITCH_OPTIONS and not eq:
            argv.append(SWITCH_OPTIONS[name])
        elif item in PASSED_OVER or item.startswith(PASSED_OVER_PREFIXES):
            continue
        elif item == "ro":
            raise HelperError("read-only mounts (ro) are not supported by oaiofs")
        elif name == "password":
            raise HelperError("no password in mount options (they are visible in /proc): use password_file=FILE")
        elif not sloppy:
            known = sorted([f"{k}=" for k in VALUE_OPTIONS] + list(SWITCH_OPTIONS))
            raise HelperError(f"unknown mount option {item!r} (oaiofs options: {', '.join(known)})")
    return argv


def _parse_helper_args(argv: list[str], want: int) -> tuple[list[str], list[str], set[str]]:
    """mount(8)/umount(8) helper calling convention -> (positionals, -o items, single-letter flags)."""
    positionals: list[str] = []
    options: list[str] = []
    flags: set[str] = set()
    it = iter(argv)
    for arg in it:
        if arg in ("-o", "-t", "-N"):
            value = next(it, "")
            if arg == "-o":
                options += split_options(value)
        elif arg.startswith("-o") and len(arg) > 2:
            options += split_options(arg[2:])
        elif arg.startswith("-") and len(arg) > 1:
            flags.update(arg[1:])
        else:
            positionals.append(arg)
    if len(positionals) != want:
        raise HelperError(f"expected {want} arguments, got {len(positionals)}: {' '.join(positionals)}")
    return positionals, options, flags


def mount_main(argv: list[str] | None = None) -> int:
    """``mount.fuse.oaiofs SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS]``."""
    from .cli import main

    argv = sys.argv[1:] if argv is None else argv
    try:
        (source, mountpoint), options, flags = _parse_helper_args(argv, 2)
        mount_args = mount_argv(source, mountpoint, options, sloppy="s" in flags)
    except HelperError as exc:
        print(f"mount.fuse.oaiofs: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    if "f" in flags:       # mount -f: fake it
        return exitcodes.OK
    return main(["-v", *mount_args] if "v" in flags else mount_args)


def umount_main(argv: list[str] | None = None) -> int:
    """``umount.fuse.oaiofs MOUNTPOINT [-flnrv]``: ``oaiofs umount`` (waits for pending uploads)."""
    from .cli import main

    argv = sys.argv[1:] if argv is None else argv
    try:
        (mountpoint,), _options, flags = _parse_helper_args(argv, 1)
    except HelperError as exc:
        print(f"umount.fuse.oaiofs: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    args = ["umount", mountpoint]
    if "f" in flags:
        args.append("--force")
    if "l" in flags:
        args.append("--lazy")
    return main(args)


def helper_script(kind: str, python: str | None = None) -> str:
    """The text of ``mount.fuse.oaiofs`` (kind ``mount``) or ``umount.fuse.oaiofs`` (kind ``umount``)."""
    python = python or sys.executable
    return (f"#!{python}\n{MARKER}\n"
            f"import sys\nfrom oaiofs.mount_helper import {kind}_main\nsys.exit({kind}_main())\n")


def install(directory: Path = DEFAULT_DIR, force: bool = False) -> list[Path]:
    """Write both helpers into ``directory`` (refuses to replace foreign files unless ``force``)."""
    written = []
    for name, kind in zip(HELPERS, ("mount", "umount")):
        path = directory / name
        if path.exists() and not force and MARKER not in _read(path):
            raise HelperError(f"{path} exists and was not written by oaiofs (use --force to replace it)")
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(helper_script(kind), encoding="utf-8")
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        written.append(path)
    return written


def uninstall(directory: Path = DEFAULT_DIR) -> list[Path]:
    """Remove the helpers this command wrote."""
    removed = []
    for name in HELPERS:
        path = directory / name
        if path.exists() and MARKER in _read(path):
            path.unlink()
            removed.append(path)
    return removed


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        return ""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("mount-helper", help="install the mount(8) helpers for `mount -t fuse.oaiofs` and fstab")
    sub = p.add_subparsers(dest="helper_command", metavar="ACTION", required=True)
    inst = sub.add_parser("install", help=f"write {' and '.join(HELPERS)} (default into {DEFAULT_DIR})")
    inst.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"where mount(8) finds them (default {DEFAULT_DIR})")
    inst.add_argument("--force", action="store_true", help="replace helpers not written by oaiofs")
    inst.set_defaults(func=cmd_install)
    rm = sub.add_parser("uninstall", help="remove the helpers written by `install`")
    rm.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    rm.set_defaults(func=cmd_uninstall)


def cmd_install(args: argparse.Namespace) -> int:
    try:
        paths = install(args.dir, args.force)
    except (HelperError, OSError) as exc:
        print(f"oaiofs: cannot install the mount helpers: {exc}", file=sys.stderr)
        return exitcodes.ERROR
    for path in paths:
        print(f"oaiofs: wrote {path} (runs {sys.executable})")
    return exitcodes.OK


def cmd_uninstall(args: argparse.Namespace) -> int:
    for path in uninstall(args.dir):
        print(f"oaiofs: removed {path}")
    return exitcodes.OK
