"""The neurons' start-up checks against a real chain (the SDK offline, `conftest.FakeSubtensorNode`):
the validator starts only as a validator by the one rule, and the "register first" hint is a
command the pinned btcli accepts."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bittensor as bt
import pytest

from quasar.chain.subtensor import SubtensorChain
from quasar.config import Settings
from quasar.miner.cli import MinerSetupError
from quasar.miner.cli import _check_registration as check_miner
from quasar.validator.cli import ValidatorSetupError
from quasar.validator.cli import _check_registration as check_validator

BTCLI = Path(sys.executable).with_name("btcli")
Node = Any


@pytest.fixture
def chain(node: Node) -> Iterator[SubtensorChain]:
    adapter = SubtensorChain("test", netuid=383, substrate=node)
    node.netuid = 383
    yield adapter
    adapter.close()


def _settings(wallets: dict[str, bt.Wallet], **values: Any) -> Settings:
    path = Path(wallets["owner"].path).expanduser()
    return Settings(_env_file=None, subtensor_network="test", wallet_path=path, **values)


def _btcli_accepts(command: str) -> subprocess.CompletedProcess[str]:
    """Run the pinned btcli on ``command``'s arguments with --help: it parses every flag, sends nothing."""
    argv = shlex.split(command)
    assert argv[:3] == ["btcli", "subnet", "register"], command
    return subprocess.run([str(BTCLI), *argv[1:], "--help"], capture_output=True, text=True, timeout=120)


def test_the_register_hint_is_a_command_the_pinned_btcli_takes(
    chain: SubtensorChain, wallets: dict[str, bt.Wallet]
) -> None:
    settings = _settings(wallets, wallet_validator_name="stranger", wallet_miner_name="stranger")
    stranger = wallets["stranger"].hotkey.ss58_address
    with pytest.raises(ValidatorSetupError) as refused:
        check_validator(settings, chain, stranger)
    message = str(refused.value)
    assert "\n" not in message and f"hotkey {stranger} is not registered on subnet 383 (test)" in message
    command = message.split("register it, then stake to it: ", 1)[1]
    assert command.startswith("btcli subnet register --netuid 383 --wallet stranger --wallet-hotkey default")
    assert "--network test" in command and f"--wallet-path {settings.wallet_path}" in command
    done = _btcli_accepts(command)
    assert done.returncode == 0, done.stdout + done.stderr

    with pytest.raises(MinerSetupError) as miner_refused:
        check_miner(settings, chain, stranger)
    assert command in str(miner_refused.value)

    # The check above can fail: the flags the hint used to print are refused by this btcli.
    old = _btcli_accepts("btcli subnet register --netuid 383 --wallet.name stranger --wallet.hotkey default")
    assert old.returncode == 2 and "No such option" in old.stdout + old.stderr


def test_the_validator_starts_only_as_a_validator(chain: SubtensorChain, wallets: dict[str, bt.Wallet]) -> None:
    validator, miner = wallets["validator"].hotkey.ss58_address, wallets["miner"].hotkey.ss58_address
    check_validator(_settings(wallets, min_validator_stake=0), chain, validator)  # holds a permit
    # No permit, and a zero minimum: "permit only", as the API has it, so no start.
    with pytest.raises(ValidatorSetupError) as refused:
        check_validator(_settings(wallets, min_validator_stake=0), chain, miner)
    assert f"hotkey {miner} (uid 2) has no validator permit on subnet 383" in str(refused.value)
    assert "MIN_VALIDATOR_STAKE is 0" in str(refused.value) and "API would refuse" in str(refused.value)
    # The owner's 10 alpha meets a minimum of 5 without a permit; the miner's 0 still does not.
    owner = wallets["owner"].hotkey.ss58_address
    check_validator(_settings(wallets, min_validator_stake=5), chain, owner)
    with pytest.raises(ValidatorSetupError, match="0 stake, below MIN_VALIDATOR_STAKE=5"):
        check_validator(_settings(wallets, min_validator_stake=5), chain, miner)
