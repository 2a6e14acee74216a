"""scripts/import_cycles.py (part of the static gate) finds every import cycle, function-level and
TYPE_CHECKING imports included, and only cycles: checked on small synthetic packages."""
from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gate():
    spec = importlib.util.spec_from_file_location("import_cycles", ROOT / "scripts" / "import_cycles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _package(tmp_path: Path, name: str, files: dict[str, str]) -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for module, text in files.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(text))
    sys.path.insert(0, str(tmp_path))
    return name


def test_finds_cycles_of_every_import_kind_and_nothing_else(gate, tmp_path):
    name = _package(tmp_path, "cyclepkg", {
        "a": "from . import b\n",
        "b": "def f():\n    from . import c\n",                    # function-level
        "c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n",
        "d": "from . import a\n",                                   # imports into the cycle, not part of it
        "e": "from . import f\n",
        "f": "import cyclepkg.e\n",                                 # a second, separate cycle
        "g": "from . import d\n",
    })
    try:
        found = set(gate.cycles(name))
    finally:
        sys.path.remove(str(tmp_path))
    assert found == {frozenset({f"{name}.a", f"{name}.b", f"{name}.c"}), frozenset({f"{name}.e", f"{name}.f"})}


def test_an_acyclic_package_has_none(gate, tmp_path):
    name = _package(tmp_path, "treepkg", {"a": "from . import b, c\n", "b": "from . import c\n", "c": "import os\n"})
    try:
        assert gate.cycles(name) == []
    finally:
        sys.path.remove(str(tmp_path))


def test_oaiofs_has_only_the_known_cycles(gate):
    assert set(gate.cycles()) <= set(gate.KNOWN)
