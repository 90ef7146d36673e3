"""Who may call the miner's inference server on a real chain: validators, signed, rate-limited.

On a real chain (SUBTENSOR_NETWORK is not `embedded`) every `POST /inference` must be a btauth/1
request (`quasar.signing`) addressed to this miner's hotkey, from a validator of the subnet's
metagraph (`quasar.chain.roles.is_validator`: the API's rule too). The metagraph is cached for
METAGRAPH_TTL_SECONDS; when the chain cannot be reached a stale copy keeps serving. Each caller gets
INFERENCE_RATE_LIMIT_PER_MINUTE requests per minute (a token bucket), so one validator — or
someone replaying nothing but valid signatures — cannot monopolise the GPU.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from quasar.chain import Chain, ChainUnavailable, Metagraph
from quasar.chain.roles import is_validator


class AccessDenied(Exception):
    """Refused; ``status`` and ``code`` go into the JSON error body."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class MetagraphCache:
    """The chain's metagraph, refreshed at most every ``ttl`` seconds; stale copies beat none."""

    def __init__(self, chain: Chain, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._chain = chain
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._value: Metagraph | None = None
        self._fetched = 0.0

    def get(self) -> Metagraph:
        with self._lock:
            now = self._clock()
            if self._value is None or now - self._fetched >= self._ttl:
                try:
                    self._value = self._chain.metagraph()
                    self._fetched = now
                except ChainUnavailable:
                    if self._value is None:
                        raise
            return self._value


class RateLimiter:
    """Token bucket per caller: ``per_minute`` requests a minute, bursts up to the same number."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_minute / 60.0
        self._capacity = float(max(1, per_minute))
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, caller: str) -> float:
        """0 when the request may go ahead, else seconds until it may."""
        with self._lock:
            now = self._clock()
            tokens, stamp = self._buckets.get(caller, (self._capacity, now))
            tokens = min(self._capacity, tokens + (now - stamp) * self._rate)
            if tokens >= 1.0:
                self._buckets[caller] = (tokens - 1.0, now)
                return 0.0
            self._buckets[caller] = (tokens, now)
            return (1.0 - tokens) / self._rate if self._rate > 0 else 60.0


@dataclass
class ValidatorGate:
    """Authenticates a request and checks the caller is a validator; returns the caller's hotkey."""

    self_hotkey: str
    metagraph: MetagraphCache
    min_stake: float
    rate_limiter: RateLimiter
    max_age: float
    allowed_skew: float

    def __post_init__(self) -> None:
        from bittensor.http_auth import InMemoryNonceStore

        # One server process: an in-memory store shared by all its requests is enough.
        self._nonces = InMemoryNonceStore()

    def admit(self, headers: Mapping[str, str], body: bytes, *, method: str, target: str) -> str:
        from quasar.signing import AuthError, auth_error_code, verify_request

        try:
            caller = verify_request(
                headers,
                body,
                method=method,
                path=target,
                self_hotkey=self.self_hotkey,
                nonce_store=self._nonces,
                max_age=self.max_age,
                allowed_skew=self.allowed_skew,
            )
        except AuthError as exc:
            raise AccessDenied(401, auth_error_code(exc), str(exc)) from exc
        hotkey = caller.hotkey_ss58
        try:
            neuron = self.metagraph.get().get(hotkey)
        except ChainUnavailable as exc:
            raise AccessDenied(
                503, "chain_unavailable", f"cannot read the metagraph to check the caller: {exc}"
            ) from exc
        if not is_validator(neuron, self.min_stake):
            raise AccessDenied(
                403,
                "not_a_validator",
                f"{hotkey} holds no validator permit on this subnet; only validators may query this server",
            )
        wait = self.rate_limiter.allow(hotkey)
        if wait > 0:
            raise AccessDenied(429, "rate_limited", f"too many requests from {hotkey}; retry in {wait:.1f} s")
        return hotkey
