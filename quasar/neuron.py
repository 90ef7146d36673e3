"""What the miner and validator neurons share at start-up: settings from the original's
bittensor-style flags, the role's wallet, the btcli command that registers it, and stopping cleanly
on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bittensor as bt

from quasar.config import Settings, load_settings
from quasar.wallets import load_or_create_dev_wallet, load_wallet

log = logging.getLogger("quasar.neuron")


def settings_from_flags(flag_env: Mapping[str, str], flags: Mapping[str, Any]) -> Settings:
    """Settings with each given flag taking the place of its environment variable.

    `flag_env` maps a flag's name to the variable it stands for (e.g. "netuid" -> "NETUID"); flags
    left as None keep the environment's (or .env's) value. The flags are passed to the settings as
    values (a setting's field name is its variable's name in lower case), never written into the
    process's environment. Raises `quasar.config.InvalidSettings`.
    """
    overrides = {env.lower(): flags[key] for key, env in flag_env.items() if flags.get(key) is not None}
    return load_settings(overrides)


def load_role_wallet(settings: Settings, wallet_name: str) -> bt.Wallet:
    """The neuron's wallet: made on first use on the embedded chain, else it must exist.

    Raises `quasar.wallets.WalletNotFound` (its message names the command that makes one).
    """
    assert settings.wallet_path is not None
    if settings.is_embedded:
        return load_or_create_dev_wallet(wallet_name, settings.wallet_hotkey, settings.wallet_path)
    return load_wallet(wallet_name, settings.wallet_hotkey, settings.wallet_path)


def register_hint(settings: Settings, wallet_name: str) -> str:
    """The command that registers the role's hotkey on the subnet, in the flags of the pinned btcli
    (bittensor 11: ``--wallet``/``--wallet-hotkey``/``--network``; it refuses ``--wallet.name``)."""
    command = ["btcli", "subnet", "register", "--netuid", str(settings.netuid), "--wallet", wallet_name,
               "--wallet-hotkey", settings.wallet_hotkey, "--network", settings.subtensor_network]  # fmt: skip
    if settings.wallet_path is not None and settings.wallet_path != Path("~/.bittensor/wallets").expanduser():
        command += ["--wallet-path", str(settings.wallet_path)]
    return shlex.join(command)


def install_stop_handlers(stop: threading.Event, *, what: str) -> None:
    """SIGTERM/SIGINT set `stop`, so the loop ends between steps; a second signal exits at once."""

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            os._exit(128 + signum)
        log.info("received %s: stopping %s", signal.Signals(signum).name, what)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
