"""Abuse limits of the Validator API: requests per client IP and per signing hotkey, per minute.

Both are fixed one-minute windows counted in the memory of each API process. That is a deliberate
trade: a database counter would be shared by every replica but would add a write to every request
(the public reads included), which is exactly the load these limits protect against. The honest
consequence: with N processes (uvicorn workers or replicas) behind a balancer a client can get up to
N times the configured figure, so set the limits per process (budget / N), or enforce a global limit
at the proxy as well. The per-IP limit sees the address uvicorn reports; behind a reverse proxy run
uvicorn with `--proxy-headers --forwarded-allow-ips=<proxy>` so that is the client, not the proxy.

The per-hotkey limit is counted only after the signature verifies, so a forger naming someone
else's hotkey cannot use up that hotkey's budget. Liveness, readiness and metrics are never
limited, so monitoring from one address keeps working while a client is being refused.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from validator_api.errors import ApiError

WINDOW_SECONDS = 60.0
EXEMPT_PATHS = frozenset({"/health", "/ready", "/metrics"})


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
        """Count one request of `key`; None if allowed, else the seconds until the window turns."""
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


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def rate_limited(seconds: float, what: str, setting: str, limit: int) -> ApiError:
    """The 429 for an exhausted budget, carrying its Retry-After header."""
    error = ApiError(
        429,
        "rate_limited",
        f"too many requests from this {what} (more than {limit} a minute, {setting}); "
        f"retry after {retry_after_header(seconds)} s",
    )
    error.headers = {"Retry-After": retry_after_header(seconds)}
    return error


class IpRateLimitMiddleware:
    """Refuses with 429 `rate_limited` (and Retry-After) once an IP passes its budget this minute.

    Pure ASGI, like the request-context middleware it sits inside, so a refused request is answered
    before routing, body reading or any database work.
    """

    def __init__(self, app: ASGIApp, *, limiter: FixedWindowLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.limiter.enabled or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        wait = self.limiter.hit(ip)
        if wait is None:
            await self.app(scope, receive, send)
            return
        request_id = (scope.get("state") or {}).get("request_id")
        detail = str(rate_limited(wait, "address", "RATE_LIMIT_PER_IP_PER_MINUTE", self.limiter.limit).detail)
        payload = json.dumps({"code": "rate_limited", "detail": detail, "request_id": request_id}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"retry-after", retry_after_header(wait).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
