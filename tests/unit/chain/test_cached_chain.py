"""CachedChain over a real DevChain whose file goes away and comes back."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from bittensor.sp_core import Keypair

from quasar.chain.base import ChainUnavailable, WeightsRejected
from quasar.chain.devchain import DevChain
from quasar.chain.resilient import CachedChain


class Clock:
    """The wrapper's clock (TTL, retry spacing, block estimate), moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _take_offline(path: Path) -> None:
    """Move the chain file (and its WAL files) aside and put a directory in its place."""
    for suffix in ("", "-wal", "-shm"):
        f = path.with_name(path.name + suffix)
        if f.exists():
            f.rename(f.with_name(f.name + ".away"))
    path.mkdir()


def _bring_back(path: Path) -> None:
    path.rmdir()
    for suffix in ("", "-wal", "-shm"):
        f = path.with_name(path.name + suffix + ".away")
        if f.exists():
            f.rename(path.with_name(path.name + suffix))


@pytest.fixture
def dev(tmp_path: Path) -> DevChain:
    # an hour per block: the real chain height stays put while the test runs
    chain = DevChain(tmp_path / "chain.sqlite", block_time_seconds=3600)
    chain.advance(500)
    chain.register("owner-hotkey", "owner")
    return chain


def test_metagraph_is_cached_for_its_ttl(dev: DevChain) -> None:
    clock = Clock()
    cached = CachedChain(dev, metagraph_ttl_seconds=30, retry_seconds=5, clock=clock)
    assert len(cached.metagraph().neurons) == 1
    dev.register("newcomer", "miner")
    clock.now += 29
    assert len(cached.metagraph().neurons) == 1  # still the cached one
    clock.now += 2
    assert len(cached.metagraph().neurons) == 2
    dev.register("another", "miner")
    cached.invalidate()
    assert len(cached.metagraph().neurons) == 3


def test_an_outage_serves_the_last_metagraph_and_an_estimated_block(
    dev: DevChain, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    cached = CachedChain(dev, metagraph_ttl_seconds=30, retry_seconds=10, clock=clock, block_time_seconds=12)
    graph = cached.metagraph()
    assert cached.current_block() == 500 and cached.healthy and not cached.block_is_estimated

    _take_offline(dev.path)
    caplog.set_level(logging.DEBUG, logger="quasar.chain.resilient")
    clock.now += 60  # metagraph TTL over, five blocks of 12 s passed
    assert cached.metagraph() is graph
    assert not cached.healthy
    assert cached.last_error is not None and str(dev.path) in cached.last_error
    assert cached.last_block == 500

    assert cached.current_block() == 505
    assert cached.block_is_estimated
    clock.now += 11  # retry due: tries, fails, still estimates
    assert cached.current_block() == 505
    for _ in range(5):
        cached.metagraph()
        cached.current_block()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "chain unreachable" in warnings[0].getMessage()

    health = cached.health()
    assert (health.healthy, health.last_block, health.block_is_estimated) == (False, 500, True)

    # back online, but retries are spaced: nothing changes until retry_seconds have passed
    _bring_back(dev.path)
    dev.register("newcomer", "miner")
    clock.now += 1
    assert cached.metagraph() is graph and not cached.healthy
    clock.now += 10
    assert len(cached.metagraph().neurons) == 2
    assert cached.healthy and cached.last_error is None
    assert cached.current_block() == 500 and not cached.block_is_estimated
    assert any("reachable again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_a_chain_never_reached_raises_chain_unavailable(tmp_path: Path) -> None:
    (tmp_path / "chain.sqlite").mkdir()
    cached = CachedChain(DevChain(tmp_path / "chain.sqlite"), metagraph_ttl_seconds=30, retry_seconds=5, clock=Clock())
    with pytest.raises(ChainUnavailable, match="chain.sqlite"):
        cached.current_block()
    with pytest.raises(ChainUnavailable):
        cached.metagraph()
    assert not cached.healthy and cached.last_block is None


def test_set_weights_passes_through_and_updates_health(dev: DevChain) -> None:
    clock = Clock()
    cached = CachedChain(dev, metagraph_ttl_seconds=30, retry_seconds=5, clock=clock)
    validator = Keypair.create_from_uri("//Bob")
    with pytest.raises(WeightsRejected):
        cached.set_weights(validator, [0], [1.0])
    assert cached.healthy  # a refusal is an answer
    dev.register(validator.ss58_address, "validator")
    assert cached.set_weights(validator, [0], [1.0]) == "500"

    _take_offline(dev.path)
    with pytest.raises(ChainUnavailable):
        cached.set_weights(validator, [0], [1.0])  # writes are never faked
    assert not cached.healthy
