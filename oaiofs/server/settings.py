"""Server settings: one dataclass, filled from the command line or the environment.

``OAIOFS_DB_URL``, ``OAIOFS_BLOBS_URL``, ``OAIOFS_S3_ENDPOINT`` and ``OAIOFS_DATA``
override the defaults; :meth:`ServerSettings.to_env`/:meth:`from_env` carry the
settings into uvicorn worker processes (``serve --workers N``).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import platformdirs

from .. import protocol

ENV_SETTINGS_JSON = "OAIOFS_SERVER_SETTINGS"   # all settings as JSON (for worker processes)


def default_data_dir() -> Path:
    """The per-user data folder (``~/.local/share/oaiofs`` on Linux)."""
    return Path(os.environ.get("OAIOFS_DATA") or platformdirs.user_data_dir("oaiofs"))


_ENV_NUMBERS = ("upload_expiry_s", "cart_ttl_s", "cart_quota_bytes", "max_upload_bytes", "purge_interval_s",
                "token_ttl_s", "max_active_requests", "max_queued_requests", "queue_wait_s",
                "min_free_bytes", "blob_gc_grace_s", "history_keep_versions", "history_keep_days",
                "history_max_versions", "trash_retention_s")


@dataclasses.dataclass
class ServerSettings:
    """Everything the server needs to know at start-up."""

    data_dir: Path = dataclasses.field(default_factory=default_data_dir)
    db_url: str | None = None            # default: sqlite:///<data_dir>/oaiofs.db
    blobs_url: str | None = None         # default: <data_dir>/blobs
    s3_endpoint: str | None = None
    host: str = "127.0.0.1"
    port: int = protocol.DEFAULT_PORT
    token_ttl_s: int = 30 * 24 * 3600
    upload_expiry_s: int = 24 * 3600
    cart_ttl_s: int = 24 * 3600
    cart_quota_bytes: int = 10 * 1024 ** 3
    max_upload_bytes: int = 64 * 1024 ** 3
    workers: int = 1
    purge_interval_s: float = 300.0      # expired uploads/carts/tokens are purged this often (and at start-up)
    max_active_requests: int = 16        # API requests doing database work at once (per process)
    max_queued_requests: int = 512       # requests waiting for one of those; beyond: 503 + Retry-After
    queue_wait_s: float = 20.0           # longest wait in that queue before a 503
    min_free_bytes: int = 32 * 1024 ** 2  # local blobs: uploads stop (507) before the disk has less free
    blob_gc_grace_s: float = 3600.0      # an unreferenced blob is removed after being seen so this long
    # version history (server/history.py): a version stays while it is one of the newest N of its file
    # (values: of its object) or younger than D days; never more than M (0: no cap)
    history_keep_versions: int = 10
    history_keep_days: float = 30.0
    history_max_versions: int = 1000
    trash_retention_s: float = 30 * 24 * 3600.0   # deleted files/folders/objects stay restorable this long

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser()
        self.db_url = self.db_url or os.environ.get("OAIOFS_DB_URL") or None
        self.blobs_url = self.blobs_url or os.environ.get("OAIOFS_BLOBS_URL") or None
        self.s3_endpoint = self.s3_endpoint or os.environ.get("OAIOFS_S3_ENDPOINT") or None
        for name in _ENV_NUMBERS:            # e.g. OAIOFS_UPLOAD_EXPIRY_S=2 (tests use short expiries)
            raw = os.environ.get("OAIOFS_" + name.upper())
            if raw:
                setattr(self, name, type(getattr(self, name))(float(raw)))

    @property
    def database_url(self) -> str:
        """The effective database URL."""
        return self.db_url or f"sqlite:///{self.data_dir / 'oaiofs.db'}"

    def ensure_dirs(self) -> None:
        """Create the data folder, private to this user (0700)."""
        existed = self.data_dir.exists()
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not existed:
            os.chmod(self.data_dir, 0o700)     # mkdir's mode is filtered by the umask

    def to_env(self) -> dict[str, str]:
        """These settings as an environment entry (read back with :meth:`from_env`)."""
        raw = dataclasses.asdict(self)
        raw["data_dir"] = str(self.data_dir)
        return {ENV_SETTINGS_JSON: json.dumps(raw)}

    @classmethod
    def from_env(cls) -> "ServerSettings":
        """Settings passed by :meth:`to_env`, or the defaults."""
        raw = os.environ.get(ENV_SETTINGS_JSON)
        if not raw:
            return cls()
        data = json.loads(raw)
        data["data_dir"] = Path(data["data_dir"])
        return cls(**data)
