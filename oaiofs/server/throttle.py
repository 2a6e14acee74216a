"""Login throttling: failed password checks per user name and per client address.

Every failure is remembered for ``window_s`` seconds under two keys, the user
name and the client address. Up to ``free`` failures per key cost nothing more;
after that the next attempt is allowed only ``base_delay_s * 2**(n - free)``
seconds (at most ``max_delay_s``) after the last failure, and an attempt before
then is refused at once with 429 ``too_many_requests`` and ``Retry-After`` --
before any password hashing, so a flood costs no CPU and holds no worker thread
asleep. A correct password resets the user name's count (not the address's).

Credentials already verified recently (the server's short-lived cache of good
Basic credentials) and bearer tokens are not throttled: a flood of wrong passwords
for one name never locks out another user, not even one on the same address.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import cachetools

from ..errors import TooManyRequests


@dataclass
class _Failures:
    count: int
    last: float


class LoginThrottle:
    """Failure counters with exponential back-off (thread-safe, bounded memory)."""

    def __init__(self, free_per_user: int = 5, free_per_address: int = 100, base_delay_s: float = 1.0,
                 max_delay_s: float = 300.0, window_s: float = 900.0, maxsize: int = 100_000) -> None:
        self.free = {"user": free_per_user, "address": free_per_address}
        self.base_delay_s, self.max_delay_s, self.window_s = base_delay_s, max_delay_s, window_s
        self._lock = threading.Lock()
        self._failures: cachetools.TTLCache[tuple[str, str], _Failures] = cachetools.TTLCache(maxsize, window_s)

    def _wait(self, kind: str, key: str, now: float) -> float:
        entry = self._failures.get((kind, key))
        if entry is None or entry.count < self.free[kind]:
            return 0.0
        delay = min(self.max_delay_s, self.base_delay_s * 2 ** min(entry.count - self.free[kind], 30))
        return max(0.0, entry.last + delay - now)

    def check(self, username: str, address: str | None) -> None:
        """Raise ``TooManyRequests`` (with ``Retry-After``) if either key is still backing off."""
        now = time.monotonic()
        with self._lock:
            wait = max(self._wait("user", username, now), self._wait("address", address or "", now))
        if wait > 0:
            retry = max(1, math.ceil(wait))
            err = TooManyRequests("too many failed logins; try again later", {"retry_after": retry})
            err.headers = {"Retry-After": str(retry)}  # type: ignore[attr-defined]
            raise err

    def failed(self, username: str, address: str | None) -> None:
        now = time.monotonic()
        with self._lock:
            for kind, key in (("user", username), ("address", address or "")):
                entry = self._failures.get((kind, key))
                self._failures[(kind, key)] = _Failures(entry.count + 1 if entry else 1, now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(("user", username), None)
