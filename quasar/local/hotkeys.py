"""The dev hotkeys of `quasar local up`, one per role, registered on the dev chain."""

from __future__ import annotations

from dataclasses import dataclass

from quasar.config import Settings

DEV_ROLES = {
    "owner": "quasar_owner",
    "miner": "quasar_miner",
    "cheater": "quasar_cheater",
    "validator": "quasar_validator",
}
CHAIN_ROLE = {"owner": "owner", "miner": "miner", "cheater": "miner", "validator": "validator"}


@dataclass
class DevIdentity:
    role: str
    wallet_name: str
    hotkey: str
    uid: int


def prepare_chain_and_wallets(settings: Settings) -> list[DevIdentity]:
    """Dev hotkeys for each role, registered on the dev chain (idempotent)."""
    from quasar.chain.devchain import DevChain
    from quasar.wallets import load_or_create_dev_wallet

    assert settings.dev_chain_path is not None and settings.wallet_path is not None
    chain = DevChain(
        settings.dev_chain_path, netuid=settings.netuid, block_time_seconds=settings.block_time_seconds or 1
    )
    chain.init()
    identities = []
    for role, wallet_name in DEV_ROLES.items():  # owner first, so it takes uid 0 (the burn uid)
        wallet = load_or_create_dev_wallet(wallet_name, settings.wallet_hotkey, settings.wallet_path)
        address = wallet.hotkey.ss58_address
        chain_role = CHAIN_ROLE[role]
        uid = chain.register(address, chain_role, stake=0.0 if chain_role == "miner" else 10_000.0)  # type: ignore[arg-type]
        identities.append(DevIdentity(role, wallet_name, address, uid))
    return identities

