"""Request limits per caller, counted in one process's memory: the Validator API's and the inference server's.

Both limiters answer `hit(key)`: None while `key` is within its budget, else the seconds until it
may try again. `FixedWindowLimiter` counts aligned one-minute windows and drops its table when the
window turns, so a flood of distinct keys (client IPs) costs at most one window of entries: the API
uses it per IP and per hotkey. `TokenBucketLimiter` refills continuously, so a caller that spends
its budget at a window's end cannot spend it again a moment later: the inference server uses it per
validator, whose GPU a burst would monopolise.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

WINDOW_SECONDS = 60.0


class Limiter(Protocol):
    """A per-key request budget of `limit` requests a minute (0: unlimited)."""

    limit: int

    def hit(self, key: str) -> float | None:
        """Count one request of `key`; None if allowed, else the seconds until it may try again."""
        ...


class FixedWindowLimiter:
    """At most `limit` hits per key in each aligned `window`-second window (0: unlimited).

    Memory holds only the keys seen in the current window: the table is dropped when the window
    turns, so a flood of distinct keys costs at most one window's worth of entries.
    """

    def __init__(
        self, limit: int, *, window: float = WINDOW_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._window_index = -1
        self._counts: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def hit(self, key: str) -> float | None:
        if self.limit <= 0:
            return None
        now = self._clock()
        index = int(now // self.window)
        with self._lock:
            if index != self._window_index:
                self._window_index = index
                self._counts = {}
            count = self._counts.get(key, 0) + 1
            self._counts[key] = count
        if count <= self.limit:
            return None
        return (index + 1) * self.window - now


class TokenBucketLimiter:
    """A token bucket per key: `limit` requests a minute (at least one), bursts up to the same number."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._rate = limit / WINDOW_SECONDS
        self._capacity = float(max(1, limit))
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def hit(self, key: str) -> float | None:
        with self._lock:
            now = self._clock()
            tokens, stamp = self._buckets.get(key, (self._capacity, now))
            tokens = min(self._capacity, tokens + (now - stamp) * self._rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self._rate if self._rate > 0 else WINDOW_SECONDS


def retry_after_header(seconds: float) -> str:
    """A Retry-After value: whole seconds, at least one (a client told 0 would retry at once)."""
    return str(max(1, math.ceil(seconds)))


def rate_limit_detail(seconds: float, what: str, setting: str, limit: int) -> str:
    """The sentence of a 429: whose budget ran out (`what`: "hotkey", "address"), which setting sets it."""
    return (
        f"too many requests from this {what} (more than {limit} a minute, {setting}); "
        f"retry after {retry_after_header(seconds)} s"
    )
