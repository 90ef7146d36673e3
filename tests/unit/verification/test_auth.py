"""The inference server's caller checks that need no server: rate limit and metagraph cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from quasar.chain import ChainUnavailable, Metagraph
from quasar.chain.devchain import DevChain
from quasar.inference.auth import MetagraphCache, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_is_per_caller_and_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(2, clock)
    assert limiter.allow("a") == 0 and limiter.allow("a") == 0
    assert limiter.allow("a") == pytest.approx(30.0)
    assert limiter.allow("b") == 0
    clock.now = 30.0
    assert limiter.allow("a") == 0


def test_metagraph_cache_refreshes_after_ttl_and_keeps_a_stale_copy(tmp_path: Path) -> None:
    chain = DevChain(tmp_path / "c.sqlite", block_time_seconds=1000.0)
    clock = Clock()
    cache = MetagraphCache(chain, ttl=30.0, clock=clock)
    assert cache.get().get("v") is None
    chain.register("v", "validator")
    assert cache.get().get("v") is None  # cached
    clock.now = 31.0
    assert cache.get().get("v").validator_permit

    class Down:
        netuid = 24

        def metagraph(self) -> Metagraph:
            raise ChainUnavailable("down")

    stale = MetagraphCache(Down(), ttl=0.0)  # type: ignore[arg-type]
    with pytest.raises(ChainUnavailable):
        stale.get()
    stale._value = cache.get()  # a copy fetched earlier keeps serving while the chain is down
    assert stale.get().get("v") is not None
