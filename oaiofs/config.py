"""The drive's config file (``$XDG_CONFIG_HOME/oaiofs/config.toml``) and password files.

Layout (every key optional; command-line flags override the file)::

    [defaults]                 # applies to every drive
    cache_size = "2G"

    [drives.home]              # a named drive: ``oaiofs mount --drive home``
    server = "http://127.0.0.1:8470"
    user = "alice"
    password_file = "~/.config/oaiofs/alice.password"   # mode 0600
    mountpoint = "~/oaio"
    cache = "~/.cache/oaiofs/alice"

Keys of a drive may also stand at the top level (one unnamed drive). Which drive
``oaiofs mount`` uses: ``--drive NAME``; else the drive whose ``mountpoint`` is the
given mountpoint; else the only drive; else the top-level keys.
"""
from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - python 3.10
    import tomli as tomllib

CONFIG_ENV = "OAIOFS_CONFIG"
# key -> type; paths are expanded (~, $VARS) and made absolute
DRIVE_KEYS: dict[str, type] = {
    "server": str, "user": str, "password_file": Path, "mountpoint": Path, "cache": Path,
    "cache_size": str, "attr_timeout": float, "entry_timeout": float, "poll": float,
    "allow_other": bool, "no_xattrs": bool, "metrics_addr": str, "log_format": str,
}


class ConfigError(Exception):
    """A config or password file that cannot be used (the message says why and where)."""


def config_path() -> Path:
    """``$OAIOFS_CONFIG``, else ``$XDG_CONFIG_HOME/oaiofs/config.toml`` (``~/.config`` by default)."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "oaiofs" / "config.toml"


@dataclass
class Config:
    """The parsed file: top-level/default drive keys and the named drives."""

    path: Path | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    drives: dict[str, dict[str, Any]] = field(default_factory=dict)

    def drive(self, name: str | None = None, mountpoint: Path | None = None) -> dict[str, Any]:
        """The settings of one drive (defaults merged in); raises ConfigError for an unknown name."""
        if name is not None:
            if name not in self.drives:
                known = ", ".join(sorted(self.drives)) or "none"
                raise ConfigError(f"no drive {name!r} in {self.path} (drives: {known})")
            return {**self.defaults, **self.drives[name], "drive": name}
        if mountpoint is not None:
            target = os.path.abspath(mountpoint)
            for dname, values in self.drives.items():
                if values.get("mountpoint") is not None and os.path.abspath(values["mountpoint"]) == target:
                    return {**self.defaults, **values, "drive": dname}
        if len(self.drives) == 1 and not any(k in self.defaults for k in ("server", "user")):
            (dname, values), = self.drives.items()
            return {**self.defaults, **values, "drive": dname}
        return dict(self.defaults)


def _typed(key: str, value: Any, where: str) -> Any:
    kind = DRIVE_KEYS.get(key)
    if kind is None:
        raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(DRIVE_KEYS))})")
    if kind is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: {key} must be a path string")
        return Path(os.path.expandvars(os.path.expanduser(value))).absolute()
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and key == "cache_size" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: {key} must be a {kind.__name__}, not {type(value).__name__}")
    return value


def _section(values: dict[str, Any], where: str) -> dict[str, Any]:
    return {key: _typed(key, value, where) for key, value in values.items()}


def load_config(path: Path | None = None) -> Config:
    """Read the config file (an absent default file is an empty config; an absent explicit one is an error)."""
    explicit = path is not None or bool(os.environ.get(CONFIG_ENV))
    path = path or config_path()
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {path} does not exist") from None
        return Config()
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    drives_doc = doc.pop("drives", {})
    defaults_doc = doc.pop("defaults", {})
    if not isinstance(drives_doc, dict) or not isinstance(defaults_doc, dict):
        raise ConfigError(f"{path}: [drives.NAME] and [defaults] must be tables")
    defaults = {**_section(defaults_doc, f"{path} [defaults]"), **_section(doc, str(path))}
    drives = {}
    for name, values in drives_doc.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: drives.{name} must be a table")
        drives[name] = _section(values, f"{path} [drives.{name}]")
    return Config(path, defaults, drives)


def read_password_file(path: Path) -> str:
    """The password in ``path`` (one trailing newline dropped); refuses files others may read."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"password file {path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise ConfigError(f"password file {path} is readable by other users (mode {mode:04o}); "
                              f"make it private: chmod 600 {path}")
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"password file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"cannot read password file {path}: permission denied") from None
    except UnicodeDecodeError:
        raise ConfigError(f"password file {path} is not UTF-8 text") from None
    password = text[:-1] if text.endswith("\n") else text
    password = password[:-1] if password.endswith("\r") else password
    if not password:
        raise ConfigError(f"password file {path} is empty")
    return password
