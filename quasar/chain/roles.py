"""The role rules, shared by the API, the miner's inference gate (both through `quasar.gate`) and the
validator's start-up, so the three can never disagree about a hotkey.

A miner is any hotkey registered on the subnet. A validator is a registered hotkey that holds a
validator permit, or at least MIN_VALIDATOR_STAKE stake when that minimum is above zero; a minimum of
zero (the embedded profile's) means "permit only", never "every registered hotkey". The owner is
OWNER_HOTKEY, or else the subnet owner the metagraph names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from quasar.chain.base import Metagraph, Neuron

Role = Literal["miner", "validator", "owner"]


def is_validator(neuron: Neuron | None, min_stake: float | None) -> bool:
    """Whether the metagraph's ``neuron`` (None: not registered) may act as a validator."""
    if neuron is None:
        return False
    minimum = min_stake or 0.0
    return neuron.validator_permit or (minimum > 0 and neuron.stake >= minimum)


def not_validator_reason(hotkey: str, neuron: Neuron | None, min_stake: float | None, netuid: int) -> str | None:
    """None when the rule says ``hotkey`` is a validator, else one sentence saying why it is not."""
    if is_validator(neuron, min_stake):
        return None
    if neuron is None:
        return f"hotkey {hotkey} is not registered on subnet {netuid}"
    minimum = min_stake or 0.0
    stake = (
        f" and {neuron.stake:g} stake, below MIN_VALIDATOR_STAKE={minimum:g}"
        if minimum > 0
        else " (MIN_VALIDATOR_STAKE is 0, so only a permit counts)"
    )
    return f"hotkey {hotkey} (uid {neuron.uid}) has no validator permit on subnet {netuid}{stake}"


@dataclass(frozen=True)
class Roles:
    """What a hotkey may do, from one metagraph snapshot."""

    hotkey: str
    registered: bool
    validator: bool
    owner: bool
    uid: int | None

    @classmethod
    def of(cls, hotkey: str, metagraph: Metagraph, *, owner_hotkey: str | None, min_stake: float | None) -> Roles:
        """``owner_hotkey`` is OWNER_HOTKEY (None: the owner the metagraph names)."""
        neuron = metagraph.get(hotkey)
        owner = owner_hotkey or metagraph.owner_hotkey
        return cls(
            hotkey=hotkey,
            registered=neuron is not None,
            validator=is_validator(neuron, min_stake),
            owner=owner is not None and hotkey == owner,
            uid=None if neuron is None else neuron.uid,
        )
