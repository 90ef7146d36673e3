"""A chain wrapper for long-running services: cached metagraph, and life goes on while the chain is down.

`CachedChain` wraps any `Chain`. It keeps the metagraph for `metagraph_ttl_seconds`, and when the
chain cannot be reached it keeps serving the last good metagraph and an *estimated* block instead
of failing, so the API keeps answering (its `/health` says `degraded`) and neurons keep working on
what they last knew. It says where it stands through `healthy`, `last_error`, `last_block` and
`block_is_estimated`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from quasar.chain.base import Chain, ChainUnavailable, Metagraph, WeightLimits, WeightsRejected

logger = logging.getLogger(__name__)

DEFAULT_BLOCK_TIME_SECONDS = 12.0


@dataclass(frozen=True)
class ChainHealth:
    """A snapshot of `CachedChain`'s view of the chain, for `/health` and logs."""

    healthy: bool
    last_error: str | None
    last_block: int | None
    block_is_estimated: bool
    metagraph_age_seconds: float | None


class CachedChain:
    """Wraps a `Chain`: caches the metagraph, survives outages, reports its health.

    Reads (`current_block`, `metagraph`) never raise once the chain has answered at least once:

    * `metagraph()` is served from cache while younger than `metagraph_ttl_seconds`; after that it
      is refetched, and if the fetch fails the last good metagraph is returned (stale).
    * `current_block()` asks the chain each time. While the chain is unreachable it returns an
      **estimate**: the last block the chain reported plus the time elapsed since then divided by
      the block time (`block_time_seconds`, default the wrapped chain's own, else 12 s). The
      estimate can drift from the real chain during a long outage; `block_is_estimated` says when
      a value is one.
    * During an outage the chain is retried at most every `retry_seconds`; calls in between answer
      from cache at once rather than each waiting out a connection attempt.

    One warning is logged when an outage starts and one info line when it ends, not one per call.
    `ChainUnavailable` is raised only while the chain has never been reached (nothing to serve).
    `set_weights` is passed through (a write must not be faked): it raises as the chain does, and
    its outcome updates the health state.
    """

    def __init__(
        self,
        chain: Chain,
        *,
        metagraph_ttl_seconds: float,
        retry_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        block_time_seconds: float | None = None,
    ) -> None:
        self.chain = chain
        self.netuid = chain.netuid
        self.metagraph_ttl_seconds = metagraph_ttl_seconds
        self.retry_seconds = retry_seconds
        self.block_time_seconds = float(
            block_time_seconds or getattr(chain, "block_time_seconds", None) or DEFAULT_BLOCK_TIME_SECONDS
        )
        self._clock = clock
        self._lock = threading.Lock()
        # Only one thread refreshes the metagraph at a time; the others get the cached one.
        self._refreshing = threading.Lock()
        self._metagraph: Metagraph | None = None
        self._metagraph_at: float | None = None
        self._block: int | None = None
        self._block_at: float | None = None
        self._healthy = True
        self._last_error: str | None = None
        self._outage_since: float | None = None
        self._last_attempt_failed_at: float | None = None
        self._estimated = False

    # --- state ---------------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        """Whether the last call that reached for the chain got through (True before any call)."""
        return self._healthy

    @property
    def last_error(self) -> str | None:
        """Why the chain is considered down, or None while it is healthy."""
        return self._last_error

    @property
    def last_block(self) -> int | None:
        """The last block the chain itself reported (never an estimate); None before any."""
        return self._block

    @property
    def block_is_estimated(self) -> bool:
        """Whether the last `current_block()` answer was an estimate rather than the chain's."""
        return self._estimated

    def health(self) -> ChainHealth:
        with self._lock:
            age = None if self._metagraph_at is None else self._clock() - self._metagraph_at
            return ChainHealth(self._healthy, self._last_error, self._block, self._estimated, age)

    def _succeeded(self) -> None:
        with self._lock:
            if not self._healthy:
                assert self._outage_since is not None
                logger.info(
                    "chain reachable again after %.0f s (netuid %s)",
                    self._clock() - self._outage_since,
                    self.netuid,
                )
            self._healthy = True
            self._last_error = None
            self._outage_since = None
            self._last_attempt_failed_at = None

    def _failed(self, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        if not isinstance(exc, ChainUnavailable):
            message = f"{type(exc).__name__}: {message}"
        with self._lock:
            now = self._clock()
            if self._healthy:
                self._outage_since = now
                logger.warning(
                    "chain unreachable, serving the last known metagraph and an estimated block "
                    "(retrying every %g s): %s",
                    self.retry_seconds,
                    message,
                )
            else:
                logger.debug("chain still unreachable: %s", message)
            self._healthy = False
            self._last_error = message
            self._last_attempt_failed_at = now

    def _retry_due(self) -> bool:
        with self._lock:
            failed_at = self._last_attempt_failed_at
            return failed_at is None or self._clock() - failed_at >= self.retry_seconds

    def _remember_block(self, block: int) -> None:
        with self._lock:
            # A metagraph read at an older block must not move the clock backwards.
            if self._block is None or block >= self._block:
                self._block = block
                self._block_at = self._clock()

    def _estimate_block(self) -> int | None:
        with self._lock:
            if self._block is None or self._block_at is None:
                return None
            elapsed = max(0.0, self._clock() - self._block_at)
            return self._block + math.floor(elapsed / self.block_time_seconds)

    # --- Chain protocol ------------------------------------------------------------------------
    def current_block(self) -> int:
        if self._retry_due():
            try:
                block = self.chain.current_block()
            except Exception as exc:  # any failure to read is an outage for the caller's purposes
                self._failed(exc)
                error: BaseException = exc
            else:
                self._succeeded()
                self._remember_block(block)
                self._estimated = False
                return block
        else:
            error = ChainUnavailable(self._last_error or "chain unreachable")
        estimate = self._estimate_block()
        if estimate is None:
            raise _never_reached(error)
        self._estimated = True
        return estimate

    def metagraph(self) -> Metagraph:
        cached, fetched_at = self._metagraph, self._metagraph_at
        now = self._clock()
        if cached is not None and fetched_at is not None and now - fetched_at < self.metagraph_ttl_seconds:
            return cached
        if cached is not None and not self._retry_due():
            return cached
        if not self._refreshing.acquire(blocking=cached is None):
            return cached  # type: ignore[return-value]  # another thread is refreshing it
        try:
            # Another thread may have refreshed it while this one waited for the lock.
            if self._metagraph is not cached and self._metagraph is not None:
                return self._metagraph
            if cached is None and not self._retry_due():
                raise _never_reached(ChainUnavailable(self._last_error or "chain unreachable"))
            try:
                graph = self.chain.metagraph()
            except Exception as exc:
                self._failed(exc)
                if cached is None:
                    raise _never_reached(exc) from exc
                return cached
            self._succeeded()
            with self._lock:
                self._metagraph, self._metagraph_at = graph, self._clock()
            self._remember_block(graph.block)
            return graph
        finally:
            self._refreshing.release()

    def set_weights(self, wallet: object, uids: Sequence[int], weights: Sequence[float]) -> str:
        try:
            result = self.chain.set_weights(wallet, uids, weights)
        except WeightsRejected:
            self._succeeded()  # the chain answered, with a no
            raise
        except ChainUnavailable as exc:
            self._failed(exc)
            raise
        self._succeeded()
        return result

    def weight_limits(self) -> WeightLimits:
        """Passed through, like a write: limits guessed during an outage would only get a vector refused."""
        try:
            limits = self.chain.weight_limits()
        except ChainUnavailable as exc:
            self._failed(exc)
            raise
        self._succeeded()
        return limits

    def invalidate(self) -> None:
        """Forget the cached metagraph so the next read refetches (e.g. after a registration)."""
        with self._lock:
            self._metagraph_at = None


def _never_reached(error: BaseException) -> ChainUnavailable:
    if isinstance(error, ChainUnavailable):
        return error
    return ChainUnavailable(f"the chain has not answered yet: {type(error).__name__}: {error}")
