"""``python -m neurons.miner``: the miner neuron, as in the original subnet (the same as ``quasar miner``).

    python -m neurons.miner --wallet.name NAME --wallet.hotkey HOTKEY \
        --subtensor.network finney --netuid 24 [--axon.port 8001] [--once]

Argument parsing and the loop live in ``quasar.miner`` (cli.py, loop.py).
"""

from __future__ import annotations

from quasar.miner.cli import main

if __name__ == "__main__":
    main()
