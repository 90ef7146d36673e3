"""The one rule for "is a validator", shared by the API, the miner's inference gate and the validator's
start-up (so the three can never disagree about a hotkey).

A validator is a hotkey registered on the subnet that holds a validator permit, or at least
MIN_VALIDATOR_STAKE stake when that minimum is above zero. A minimum of zero (the embedded profile's)
means "permit only", never "every registered hotkey".
"""

from __future__ import annotations

from quasar.chain.base import Neuron


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
