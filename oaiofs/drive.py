"""Drive: builds and runs one mount's parts (client, cache, namespace, journal, feed, Vfs).

The composition root of the drive (outside ``oaiofs.vfs``, which it wires to
``oaiofs.client``), without FUSE: ``drive_commands`` calls
:meth:`Drive.start`, hands :attr:`Drive.vfs` to ``fuse_ops.mount`` and calls
:meth:`Drive.stop` when the kernel unmounts. Tests can build a Drive and call its
Vfs directly.

Cache folder layout: ``index/`` + ``data/`` (:mod:`.cache`), ``journal/``
(:mod:`.journal`, same file system so snapshots are hard links),
``listing.json`` (:class:`.feed.ListingStore`, for offline starts).
"""
from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client.api import ApiClient
from .client.carts import CartDownloader
from .client.uploads import TusUploader
from .vfs.cache import Cache
from .vfs.compact import CompactAnswers
from .vfs.control import Control
from .vfs.feed import ChangeFeed, ListingStore
from .vfs.fetcher import Fetcher
from .vfs.journal import Journal
from .vfs.namespace import Namespace
from .vfs.source import CartSource
from .vfs.vfs import Vfs, VfsOptions

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 2 << 30


@dataclass
class DriveConfig:
    """Everything a mount needs to know."""

    server: str
    user: str
    password: str | None
    cache_dir: Path
    cache_bytes: int = DEFAULT_CACHE_BYTES
    device_id: str = field(default_factory=socket.gethostname)
    long_poll_s: float = 20.0
    upload_parallel: int | None = None     # ops of one object sent at once (None: journal default / env)


class Drive:
    """One mount's running parts."""

    def __init__(self, config: DriveConfig) -> None:
        self.config = config
        root = Path(config.cache_dir)
        root.mkdir(parents=True, exist_ok=True)
        self.api = ApiClient(config.server, config.user, config.password, app_id="oaiofs-drive",
                             device_id=config.device_id)
        self.cache = Cache(root, config.cache_bytes)
        self.namespace = Namespace(config.user)
        self.fetcher = Fetcher(CartSource(CartDownloader(self.api, keep_modes=False)), self.cache)
        self.identity = {"server": self.api.base_url, "user": config.user}
        # metadata ops get compact answers, completed from the namespace's document (issue 16)
        self.journal = Journal(root / "journal", CompactAnswers(self.api, self.namespace.doc),
                               TusUploader(self.api), origin=f"{config.user}@{config.device_id}",
                               per_object=config.upload_parallel)
        self.feed = ChangeFeed(self.api, self.namespace, self.cache, ListingStore(root / "listing.json"),
                               self.identity, long_poll_s=config.long_poll_s, busy=self.journal.busy)
        self.vfs = Vfs(self.namespace, self.cache, self.fetcher, self.journal,
                       VfsOptions(device_id=config.device_id), extra_status=self._status_extras)
        # the journal reports to the WriteBack, which submits to the journal: wired after both exist
        self.journal.set_listener(self.vfs.writeback)
        self.namespace.set_pending_source(self.vfs.writeback.pending_ops)
        self.vfs.xattrs.control = Control(self.api, self.namespace, self.journal, self.vfs.writeback, root,
                                          self.vfs.xattrs.file_status, lambda: self.vfs.status()["online"],
                                          origin=f"{config.user}@{config.device_id}",
                                          on_subscription=self.feed.refresh, cache=self.cache)
        self.vfs.read_only = lambda: self.feed.refused
        self.online = False

    def start(self) -> bool:
        """Load the listing (server, else the saved one) and start the background threads.

        Returns whether the server answered; raises ``Unauthorized``, or ``Unavailable``
        when the server is unreachable and nothing is cached.
        """
        self.online = self.feed.initial_listing()
        self.vfs.writeback.recover()
        self.journal.start()
        self.feed.start()
        return self.online

    def stop(self) -> None:
        """Stop the threads; queued changes stay in the journal for the next mount."""
        self.feed.stop()
        self.journal.close()
        self.cache.close_all()
        self.api.close()

    def _status_extras(self) -> dict[str, Any]:
        return {"feed_online": self.feed.online, "server": self.api.base_url, "user": self.config.user,
                "cursor": self.feed.cursor, "refused": self.feed.refused}

