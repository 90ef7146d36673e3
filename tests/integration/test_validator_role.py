"""One rule for "is a validator": the API (real, on loopback), the miner's inference gate and the
validator's start-up give the same answer for every hotkey, at MIN_VALIDATOR_STAKE 0 and above it."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from bittensor import http_auth

from quasar.chain.roles import is_validator
from quasar.config import Settings
from quasar.gate import Refusal
from quasar.inference.auth import InferenceGate
from quasar.validator.cli import ValidatorSetupError, _check_registration

from .conftest import ApiServer, new_keypair

pytestmark = pytest.mark.timeout(120)

# (role on the dev chain, stake) -> validator at MIN_VALIDATOR_STAKE 0, and at 1000
CASES = {
    "permit": (("validator", 0.0), True, True),
    "bare": (("miner", 0.0), False, False),
    "staked": (("miner", 5000.0), False, True),
}


@pytest.mark.parametrize("min_stake", [0.0, 1000.0])
def test_api_gate_and_start_up_agree(start_api: Callable[..., ApiServer], min_stake: float) -> None:
    api = start_api("sqlite", min_validator_stake=min_stake, validators=1, miners=1)
    keys = {name: new_keypair() for name in CASES}
    for name, ((role, stake), _, _) in CASES.items():
        api.chain.register(keys[name].ss58_address, role, stake=stake)  # type: ignore[arg-type]
    time.sleep(1.2)  # the API's metagraph cache
    miner = api.miners[0].ss58_address
    start_settings = Settings(
        _env_file=None, subtensor_network="embedded", dev_chain_path=api.settings.dev_chain_path,
        min_validator_stake=min_stake, metagraph_ttl_seconds=0.0,
    )  # fmt: skip
    gate = InferenceGate.from_settings(start_settings, chain=api.chain, hotkey=miner)
    graph = api.chain.metagraph()
    for name, (_, at_zero, at_thousand) in CASES.items():
        key = keys[name]
        expected = at_zero if min_stake == 0 else at_thousand
        assert is_validator(graph.get(key.ss58_address), min_stake) is expected, name

        claimed = api.call(key, "POST", "/v1/jobs/claim")
        assert claimed.status_code == (204 if expected else 403), (name, claimed.text)
        if not expected:
            assert claimed.json()["code"] == "not_validator"

        headers = http_auth.sign(key, method="POST", path="/inference", body=b"{}", receiver_ss58=miner)
        try:
            gate.admit(headers, b"{}", method="POST", target="/inference")
            admitted = True
        except Refusal as exc:
            assert exc.status == 403 and exc.code in ("not_registered", "not_validator"), (name, exc)
            admitted = False
        assert admitted is expected, name

        try:
            _check_registration(start_settings, api.chain, key.ss58_address)
            starts = True
        except ValidatorSetupError as exc:
            assert "has no validator permit" in str(exc), (name, exc)
            starts = False
        assert starts is expected, name
