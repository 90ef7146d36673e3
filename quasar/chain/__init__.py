"""Chain access: `get_chain(settings)` picks the local dev chain or the real one (bittensor SDK).

Long-running services wrap it in `quasar.chain.resilient.CachedChain` (cached metagraph, keeps
serving while the chain is down).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quasar.chain.base import (
    Chain,
    ChainError,
    ChainUnavailable,
    Metagraph,
    Neuron,
    WeightLimits,
    WeightsRateLimited,
    WeightsRejected,
)

if TYPE_CHECKING:
    from quasar.config import Settings

__all__ = [
    "Chain",
    "ChainError",
    "ChainUnavailable",
    "Metagraph",
    "Neuron",
    "WeightLimits",
    "WeightsRateLimited",
    "WeightsRejected",
    "get_chain",
]


def get_chain(settings: Settings) -> Chain:
    """The chain the settings name: embedded → DevChain, anything else → SubtensorChain."""
    if settings.is_embedded:
        from quasar.chain.devchain import DevChain

        assert settings.dev_chain_path is not None and settings.block_time_seconds is not None
        return DevChain(
            settings.dev_chain_path, netuid=settings.netuid, block_time_seconds=settings.block_time_seconds
        )
    from quasar.chain.subtensor import SubtensorChain

    return SubtensorChain(
        settings.subtensor_network,
        netuid=settings.netuid,
        block_time_seconds=settings.block_time_seconds or 12.0,
        version_key=settings.weights_version_key,
    )
