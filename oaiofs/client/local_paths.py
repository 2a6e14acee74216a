"""Local path helpers of the client: seed placeholders, safe joins and folder listing."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from ..errors import InvalidValue
from ..protocol import normalize_file_path


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
