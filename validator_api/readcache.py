"""A short-lived, per-process cache of public GET answers (PUBLIC_CACHE_SECONDS; 0: off).

Rounds, leaderboards and weights change at most once a block (12 s on a real chain) while many
miners, validators and dashboards poll them, and the leaderboard is recomputed from every
submission of the round on each request. Serving a 200 answer from memory for a second or two
takes that load off the database and the workers. Only unsigned GETs of the public read routes
are cached (never anything signed, never /health, /ready, /metrics or the dashboard, whose page
carries a per-response CSP nonce); the key is the path with its query. Each process has its own
cache, so two requests to different workers may see answers up to the TTL apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CACHED_PREFIXES = (
    "/v1/rounds",
    "/v1/leaderboard",
    "/v1/weights",
    "/v1/submissions/",
    "/get_weights",
    "/get_current_round",
)
MAX_ENTRIES = 4096  # bounded: a flood of distinct query strings empties the cache, never grows it
_KEPT_HEADERS = {b"content-type", b"content-length"}


class PublicReadCache:
    def __init__(
        self, app: ASGIApp, *, ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app = app
        self.ttl = ttl_seconds
        self._clock = clock
        self._entries: dict[bytes, tuple[float, list[tuple[bytes, bytes]], bytes]] = {}
        self._inflight: dict[bytes, asyncio.Future[None]] = {}

    def _cacheable(self, scope: Scope) -> bool:
        if self.ttl <= 0 or scope["type"] != "http" or scope["method"] != "GET":
            return False
        if not str(scope.get("path", "")).startswith(CACHED_PREFIXES):
            return False
        # A signed read is answered for its signer; never share it.
        return not any(
            name.lower().startswith((b"x-bittensor-", b"authorization"))
            for name, _ in scope.get("headers", [])
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._cacheable(scope):
            await self.app(scope, receive, send)
            return
        key = scope.get("raw_path", scope["path"].encode()) + b"?" + scope.get("query_string", b"")
        if await self._serve_cached(key, send):
            return
        # One computation per key at a time: the others wait for it instead of all hitting the
        # database at once when an entry expires (a slow leaderboard would never be cached otherwise).
        running = self._inflight.get(key)
        if running is not None:
            await asyncio.shield(running)
            if await self._serve_cached(key, send):
                return
            await self.app(scope, receive, send)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = done
        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body") and started.get("status") == 200:
                    if len(self._entries) >= MAX_ENTRIES:
                        self._entries.clear()
                    kept = [(k, v) for k, v in started.get("headers") or [] if k.lower() in _KEPT_HEADERS]
                    # The TTL counts from when the answer is ready, not from when it was asked for.
                    self._entries[key] = (self._clock() + self.ttl, kept, b"".join(chunks))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            del self._inflight[key]
            done.set_result(None)

    async def _serve_cached(self, key: bytes, send: Send) -> bool:
        hit = self._entries.get(key)
        if hit is None or hit[0] <= self._clock():
            return False
        _, headers, body = hit
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True
