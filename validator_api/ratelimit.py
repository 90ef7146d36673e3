"""Abuse limits of the Validator API: requests per client IP and per signing hotkey, per minute.

Both are fixed one-minute windows counted in the memory of each API process. That is a deliberate
trade: a database counter would be shared by every replica but would add a write to every request
(the public reads included), which is exactly the load these limits protect against. The honest
consequence: with N processes (uvicorn workers or replicas) behind a balancer a client can get up to
N times the configured figure, so set the limits per process (budget / N), or enforce a global limit
at the proxy as well. The per-IP limit sees the address uvicorn reports; behind a reverse proxy run
uvicorn with `--proxy-headers --forwarded-allow-ips=<proxy>` so that is the client, not the proxy.

Both use `quasar.limits.FixedWindowLimiter`. This module holds the per-IP middleware; the per-hotkey
limit is counted by the signed-request gate (`quasar.gate`) only after the signature verifies, so a
forger naming someone else's hotkey cannot use up that hotkey's budget. Liveness, readiness and
metrics are never limited, so monitoring from one address keeps working while a client is refused.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from quasar.limits import FixedWindowLimiter, rate_limit_detail, retry_after_header

EXEMPT_PATHS = frozenset({"/health", "/ready", "/metrics"})


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
        detail = rate_limit_detail(wait, "address", "RATE_LIMIT_PER_IP_PER_MINUTE", self.limiter.limit)
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
