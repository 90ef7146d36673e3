"""``python -m neurons.validator``: the validator neuron, as in the original subnet (the same as ``quasar validator``).

    python -m neurons.validator --wallet.name NAME --wallet.hotkey HOTKEY \
        --subtensor.network finney --netuid 24 [--once | --max-jobs N]

Argument parsing and the loop live in ``quasar.validator`` (cli.py, loop.py).
"""

from __future__ import annotations

from quasar.validator.cli import main

if __name__ == "__main__":
    main()
