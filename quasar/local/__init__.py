"""`quasar local up`: the whole subnet on one machine, on the embedded profile (what `make demo` runs).

It prepares the dev chain and the dev hotkeys (the owner at uid 0, which is also the burn uid, two
miners and a validator), builds the tiny model, and starts, each as a child process in its own
process group: the Validator API (SQLite), the two miners' inference servers, the honest miner
(`quasar miner --once`, the real miner neuron), and the validator (`quasar validator`). A second
miner cheats: its kernel returns zeros (it is scripted here, since the real miner refuses to submit a
kernel its own bench fails). Then it follows one round to its end, has the owner close it once every
submission is evaluated, waits for the validator to set the weights on the dev chain, and says what
happened. `--keep-running` then keeps everything up for more rounds; `--once` only brings up the
chain and the API and checks them.

Every process it starts is stopped when it exits, whether by Ctrl-C, SIGTERM, an error or the end.
Logs of the children are in QUASAR_HOME/logs. All of it runs in the `quasar local up` process:

    cli.py        the command: checks, the API, then the round
    scenario.py   the round: the children it starts and what it waits for
    hotkeys.py    the dev hotkeys of each role, registered on the dev chain
    kernels.py    the miners' kernel repositories and the cheater's scripted commit-reveal
    processes.py  children in their own process groups: start, wait for, stop
    report.py     what it prints: the dev chain, the leaderboard, the weights
"""

from __future__ import annotations

# The paths `quasar.cli` and the docs name.
from quasar.local.cli import app
from quasar.local.kernels import make_kernel_repo, submit_scripted

__all__ = ["app", "make_kernel_repo", "submit_scripted"]
