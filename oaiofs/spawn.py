"""The command line of an ``oaiofs`` child process that cannot be shadowed by the current folder.

``python -m oaiofs`` puts the current folder first on ``sys.path``, so a child started from a
folder that holds a folder named ``oaiofs`` (``~`` after ``oaiofs quickstart`` mounts at
``~/oaiofs``) imports that folder instead of the installed package. ``-P`` (no unsafe path)
exists only from Python 3.11 and ``-I`` also drops the user's site-packages and environment,
so the child runs a ``-c`` stub that removes the current-folder entry before importing.
"""
from __future__ import annotations

import sys

# ``-c`` puts "" (the current folder) first on sys.path unless -P/-I/PYTHONSAFEPATH already left it out.
_BOOT = ("import sys\n"
         "if sys.path and sys.path[0] in ('', '.'): del sys.path[0]\n"
         "from oaiofs.cli import main\n"
         "raise SystemExit(main())\n")


def oaiofs_argv(*args: str) -> list[str]:
    """``[python, ..., *args]``: runs ``oaiofs ARGS`` with this interpreter and the installed package."""
    return [sys.executable, "-c", _BOOT, *args]
