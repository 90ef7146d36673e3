"""The two profiles the settings start from, and the networks they tell apart (read by `quasar.config`).

`SUBTENSOR_NETWORK=embedded` (the default) runs everything on one machine against the local dev
chain with short timings; any other network is a real chain with production timings. A setting
given explicitly always wins over its profile's value.
"""

from __future__ import annotations

from typing import Any

EMBEDDED_NETWORK = "embedded"
#: The network names the bittensor SDK resolves (`bittensor.settings.NETWORKS`, SDK 11.3); any other
#: SUBTENSOR_NETWORK must be `embedded` or a ws:// / wss:// URL.
NAMED_NETWORKS = ("finney", "test", "archive", "devnet", "local")
#: NETUID where it is left unset: the subnet's uid on each network, as the original subnet documents
#: it (383 on testnet); 24 everywhere else (finney, the embedded dev chain, local nodes and URLs).
DEFAULT_NETUIDS = {"test": 383}
DEFAULT_NETUID = 24

# Values that differ between the embedded (local) profile and a real chain. A key present in the
# environment overrides both.
PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "embedded": {
        "block_time_seconds": 1.0,
        "blocks_until_reveal": 5,
        "reveal_window_blocks": 100,
        "round_blocks": 120,
        "finalize_grace_blocks": 30,
        "evaluations_per_submission": 1,
        "auto_rounds": True,
        "min_validator_stake": 0.0,
        "weights_interval_blocks": 20,
        "sandbox_require": "namespaces",
    },
    "chain": {
        "block_time_seconds": 12.0,
        "blocks_until_reveal": 100,
        "reveal_window_blocks": 600,
        "round_blocks": 7200,
        "finalize_grace_blocks": 300,
        "evaluations_per_submission": 3,
        "auto_rounds": True,
        "min_validator_stake": 1000.0,
        "weights_interval_blocks": 360,
        "sandbox_require": "bwrap",
    },
}
