"""Loading and creating hotkeys with the bittensor SDK's own `Wallet` (SDK 11).

Production loads an existing wallet (made with btcli). Development makes unencrypted hotkeys
offline, with no prompts, under the embedded wallet path (QUASAR_HOME/wallets by default), so a
local subnet needs no manual key set-up.
"""

from __future__ import annotations

from pathlib import Path

import bittensor as bt


class WalletNotFound(Exception):
    """The named wallet has no hotkey file; the message says how to make one."""


def wallet_exists(name: str, hotkey: str, path: str | Path) -> bool:
    return (Path(path).expanduser() / name / "hotkeys" / hotkey).is_file()


def load_wallet(name: str, hotkey: str, path: str | Path) -> bt.Wallet:
    """An existing wallet; raises WalletNotFound with the command that creates one."""
    if not wallet_exists(name, hotkey, path):
        raise WalletNotFound(
            f"no hotkey '{hotkey}' in wallet '{name}' under {path}. Create it with "
            f"`quasar wallet create --name {name} --hotkey {hotkey}` (development) or "
            f"`btcli wallet new-hotkey` (production), or point WALLET_PATH at your wallets."
        )
    return bt.Wallet(name=name, hotkey=hotkey, path=str(Path(path).expanduser()))


def create_dev_wallet(name: str, hotkey: str, path: str | Path, *, overwrite: bool = False) -> bt.Wallet:
    """Make an unencrypted coldkey and hotkey offline (development only); keeps an existing one."""
    wallet = bt.Wallet(name=name, hotkey=hotkey, path=str(Path(path).expanduser()))
    if wallet_exists(name, hotkey, path) and not overwrite:
        return wallet
    coldkey_pub = Path(path).expanduser() / name / "coldkeypub.txt"
    if overwrite or not coldkey_pub.is_file():
        wallet.create_new_coldkey(use_password=False, overwrite=overwrite, suppress=True)
    wallet.create_new_hotkey(use_password=False, overwrite=overwrite, suppress=True)
    return wallet


def load_or_create_dev_wallet(name: str, hotkey: str, path: str | Path) -> bt.Wallet:
    """The embedded profile's behaviour: reuse the dev wallet, or make it on first use."""
    if wallet_exists(name, hotkey, path):
        return load_wallet(name, hotkey, path)
    return create_dev_wallet(name, hotkey, path)
