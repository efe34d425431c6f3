"""Request-rate limiting per token: an in-process token bucket.

Each token gets a bucket of ``burst`` requests that refills at ``per_minute / 60`` requests a
second. The buckets live in the API process: with several API processes behind a balancer each
enforces the limit on its own, so the effective limit is multiplied by their number. A limit of
0 disables limiting (for the server default, or for one token with ``--rate-limit 0``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_PRUNE_ABOVE = 10_000  # buckets kept before idle (full) ones are dropped


@dataclass
class _Bucket:
    capacity: float
    rate: float  # requests per second
    level: float
    updated: float

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now


class RateLimiter:
    """``hit(key)`` spends one request of the key's bucket; it answers how many seconds to wait
    when the bucket is empty (the request is then refused and nothing is spent)."""

    def __init__(
        self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if per_minute < 0 or burst < 0:
            raise ValueError("rate limits must not be negative")
        self.per_minute = per_minute
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def limits(self, override: int | None = None) -> tuple[int, int]:
        """(per minute, burst) for a key: its own limit if it has one, else the default. A key's
        own limit caps its burst too, so a token limited to 6/minute cannot send 200 at once.
        A burst of 0 means one minute's worth."""
        if override is None:
            per_minute, burst = self.per_minute, self.burst or self.per_minute
        else:
            per_minute, burst = override, min(self.burst or override, override)
        return per_minute, (max(burst, 1) if per_minute else 0)

    def hit(self, key: str, override: int | None = None) -> float | None:
        """None if the request may go ahead, else the seconds until it would be allowed."""
        per_minute, burst = self.limits(override)
        if per_minute == 0:
            return None
        rate = per_minute / 60.0
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None or bucket.capacity != burst or bucket.rate != rate:
                bucket = _Bucket(capacity=burst, rate=rate, level=burst, updated=now)
                if len(self._buckets) >= _PRUNE_ABOVE:
                    self._prune(now)
                self._buckets[key] = bucket
            bucket.refill(now)
            if bucket.level >= 1.0:
                bucket.level -= 1.0
                return None
            return (1.0 - bucket.level) / rate

    def _prune(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            bucket.refill(now)
            if bucket.level >= bucket.capacity:
                del self._buckets[key]


def retry_after_header(seconds: float) -> str:
    """Retry-After is whole seconds; round up so a client that waits that long gets through."""
    return str(max(1, math.ceil(seconds)))
