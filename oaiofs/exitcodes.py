"""Exit codes of the ``oaiofs`` commands (one table, documented in docs/drive.md)."""
from __future__ import annotations

OK = 0             # done
ERROR = 1          # anything else (the message says what)
USAGE = 2          # bad arguments, config file or password file (argparse uses 2 as well)
UNREACHABLE = 3    # the server cannot be reached and nothing is cached to mount offline
LOGIN = 4          # login refused: wrong user name or password
MOUNTPOINT = 5     # the mountpoint is missing, not a folder, not empty or already mounted
PENDING = 6        # umount --timeout: changes still pending, so not unmounted
INTERRUPTED = 130  # Ctrl+C
