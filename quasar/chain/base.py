"""The small surface the subnet needs from a chain: current block, metagraph, weights.

Two implementations: the local dev chain (`devchain.DevChain`, a SQLite file shared by all local
processes) and the real chain through the bittensor SDK (`subtensor.SubtensorChain`). Everything
else in the project talks to the `Chain` protocol only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class ChainError(Exception):
    """Base class of chain failures a caller can act on."""


class ChainUnavailable(ChainError):
    """The chain could not be reached; retry later (the message says where it tried)."""


class WeightsRejected(ChainError):
    """The chain refused a set_weights call (not registered, no permit, rate limited, ...)."""


class WeightsRateLimited(WeightsRejected):
    """Refused because weights were set too recently (SettingWeightsTooFast, the SDK's rate-limit
    preflight); setting them again before the subnet's `weights_rate_limit` has passed is futile."""


@dataclass(frozen=True)
class WeightLimits:
    """The subnet's rules for a weight vector (hyperparameters; the defaults mean "no limit")."""

    #: Blocks that must pass between two weight settings of one validator (`weights_rate_limit`).
    rate_limit_blocks: int = 0
    #: Fewest uids with a nonzero weight a vector may have (`min_allowed_weights`).
    min_allowed_weights: int = 0
    #: Largest share of the total one uid may hold (`max_weight_limit` as a fraction, 1.0: none).
    max_weight_share: float = 1.0


@dataclass(frozen=True)
class Neuron:
    uid: int
    hotkey: str
    coldkey: str | None = None
    stake: float = 0.0
    validator_permit: bool = False
    axon_ip: str | None = None
    axon_port: int | None = None

    @property
    def axon_url(self) -> str | None:
        """http://ip:port of the neuron's served address, if it published one."""
        if not self.axon_ip or not self.axon_port:
            return None
        host = f"[{self.axon_ip}]" if ":" in self.axon_ip else self.axon_ip
        return f"http://{host}:{self.axon_port}"


@dataclass(frozen=True)
class Metagraph:
    """A snapshot of one subnet's registrations at a block."""

    netuid: int
    block: int
    neurons: tuple[Neuron, ...] = ()
    owner_hotkey: str | None = None
    _index: dict[str, Neuron] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update({n.hotkey: n for n in self.neurons})

    def get(self, hotkey: str) -> Neuron | None:
        return self._index.get(hotkey)

    def uid_of(self, hotkey: str) -> int | None:
        neuron = self._index.get(hotkey)
        return None if neuron is None else neuron.uid


@runtime_checkable
class Chain(Protocol):
    """What the API and the neurons use. Raise `ChainUnavailable` when the chain cannot be reached."""

    netuid: int

    def current_block(self) -> int: ...

    def metagraph(self) -> Metagraph: ...

    def set_weights(self, wallet: object, uids: Sequence[int], weights: Sequence[float]) -> str:
        """Set the caller's weights; returns an identifier of the accepted call (block or hash)."""
        ...

    def weight_limits(self) -> WeightLimits:
        """The subnet's current rules for weight vectors."""
        ...
