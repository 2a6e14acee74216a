"""Local path helpers of the client: seed placeholders, safe joins, folder listing, cached hashing."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import platformdirs

from ..errors import InvalidValue
from ..protocol import normalize_file_path
from ..hashing import file_sha256


def placeholders() -> dict[str, str]:
    """The seed's path placeholders and what they mean on this device."""
    return {
        "{usr}": platformdirs.user_config_dir(),
        "{doc}": platformdirs.user_documents_dir(),
        "{cwd}": os.getcwd(),
    }


def resolve_placeholders(path: str) -> Path:
    """Expand ``{usr}``/``{doc}``/``{cwd}`` and ``~`` into an absolute path."""
    for name, value in placeholders().items():
        path = path.replace(name, value)
    return Path(os.path.expanduser(path)).absolute()


def safe_join(root: Path, rel_path: str) -> Path:
    """``root/rel_path`` for a clean relative path that stays inside ``root`` (symlinks resolved).

    Raises ``InvalidValue`` for absolute paths, ``..`` parts, control characters
    (see :func:`oaiofs.protocol.normalize_file_path`) and for paths whose existing
    parent folders are symlinks leading out of ``root``.
    """
    rel = normalize_file_path(rel_path)
    target = root / rel
    real_root = os.path.realpath(root)
    real_parent = os.path.realpath(target.parent)
    if os.path.commonpath([real_root, real_parent]) != real_root:
        raise InvalidValue("file path leads outside its root folder", {"path": rel[:200]})
    if target.is_symlink():
        raise InvalidValue("file path is a symbolic link", {"path": rel[:200]})
    return target


def is_inside(path: Path, root: Path) -> bool:
    """True if ``path`` (resolved) is ``root`` or below it."""
    real_root, real_path = os.path.realpath(root), os.path.realpath(path)
    return os.path.commonpath([real_root, real_path]) == real_root


def list_files(root: Path) -> list[str]:
    """Every regular file below ``root`` (hidden ones too) as sorted ``a/b`` relative paths.

    Symbolic links are skipped: a folder object holds the files that are really in it.
    """
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        for name in files:
            full = os.path.join(folder, name)
            if os.path.isfile(full) and not os.path.islink(full):
                found.append(Path(full).relative_to(root).as_posix())
    return sorted(found)


def stat_key(path: Path) -> list[int]:
    """``[size, mtime_ns]`` of a local file: unchanged key, unchanged content (as rsync and git assume)."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def local_sha256(path: Path, known: dict[str, Any] | None) -> str | None:
    """sha256 of a local file (None if it is not a regular file), reusing ``known`` while its key matches."""
    try:
        st = path.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    if known and known.get("sha256") and known.get("local") == [st.st_size, st.st_mtime_ns]:
        return str(known["sha256"])
    return file_sha256(path)
