"""The validator's weight setter against the real API on loopback: hotkeys checked before setting, the
last weights kept on disk and set again while the API is down, and the subnet's limits (through the
real bittensor SDK on `FakeSubtensorNode`, the offline stand-in for a subtensor node).

Results are posted by a validator hotkey through signed HTTP (no evaluation is run: the weights,
not the kernels, are the subject here).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import bittensor as bt
import pytest
from bittensor.sp_core import Keypair

from quasar.chain.subtensor import SubtensorChain
from quasar.client import ValidatorApiClient
from quasar.validator.weights import WeightSetter
from tests.unit.chain.conftest import FakeNeuron, FakeSubtensorNode

from .conftest import ApiServer, free_port, new_keypair

pytestmark = pytest.mark.timeout(180)


def _finalized_round_with_two_winners(api: ApiServer) -> dict[int, float]:
    """Finalize a round won by miners 0 and 1; the API's weights by uid."""
    rnd = api.new_round()
    for miner, speedup in ((api.miners[0], 3.0), (api.miners[1], 2.0)):
        api.commit_and_reveal(miner)
        job = api.call(api.validator, "POST", "/v1/jobs/claim").json()
        body = {
            "verdict": "pass", "reason": "ok", "median_ms": 1.0, "baseline_ms": speedup, "speedup": speedup,
            "max_rel_error": 1e-3, "peak_mem_mb": 100.0, "kernel_tree_hash": os.urandom(20).hex(),
        }  # fmt: skip
        posted = api.call(api.validator, "POST", f"/v1/jobs/{job['job_id']}/result", body)
        assert posted.status_code == 200, posted.text
    assert api.call(api.owner, "POST", f"/v1/rounds/{rnd['id']}/finalize").status_code == 200
    weights = api.get("/v1/weights").json()
    return dict(zip(weights["uids"], weights["weights"], strict=True))


def test_a_reregistered_uid_is_not_paid_and_the_last_weights_outlive_the_api(
    start_api: Callable[..., ApiServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api = start_api("sqlite")
    uid = api.chain.metagraph().uid_of
    winner, second = uid(api.miners[0].ss58_address), uid(api.miners[1].ss58_address)
    assert _finalized_round_with_two_winners(api) == {winner: 0.60, second: 0.25, 0: pytest.approx(0.15)}
    # After finalize the winner's slot is pruned and registered by someone else.
    newcomer = new_keypair()
    api.chain.reregister(winner, newcomer.ss58_address)

    state = tmp_path / "validator" / "weights.json"
    validator = api.validators[0]
    setter = WeightSetter(ValidatorApiClient(api.base_url), api.chain, validator, 10, burn_uid=0, state_file=state)
    with caplog.at_level(logging.INFO, logger="quasar.validator.weights"):
        assert setter.maybe_set() is not None
    on_chain = api.chain.weights(validator.ss58_address)[-1]
    assert dict(zip(on_chain.uids, on_chain.weights, strict=True)) == {0: pytest.approx(0.75), second: 0.25}
    assert f"not paying uid {winner} (0.60): held by {api.miners[0].ss58_address} at finalize, " \
           f"{newcomer.ss58_address} now; its share goes to the burn uid 0" in caplog.text  # fmt: skip
    kept = json.loads(state.read_text())
    assert (kept["uids"], kept["source"]["uids"]) == (on_chain.uids, [winner, second, 0])

    # The API goes away and the validator restarts: it sets what it last set, from disk, every tempo.
    api.stop()
    gone = ValidatorApiClient(f"http://127.0.0.1:{free_port()}", retries=0)
    restarted = WeightSetter(gone, api.chain, validator, 10, burn_uid=0, state_file=state)
    assert restarted.maybe_set() is None  # not due yet: set 0 blocks ago
    api.chain.advance(10)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="quasar.validator.weights"):
        again = restarted.maybe_set()
    assert again is not None and again.uids == on_chain.uids and again.weights == on_chain.weights
    records = api.chain.weights(validator.ss58_address)
    assert len(records) == 2 and records[-1].block == on_chain.block + 10
    (line,) = [r.getMessage() for r in caplog.records if "API is unreachable" in r.getMessage()]
    assert f"setting the weights of round {kept['round_id']}" in line and "stays active" in line
    # Still checked against the metagraph while the API is away: the second's slot changes hands too.
    api.chain.reregister(second, new_keypair().ss58_address)
    api.chain.advance(10)
    assert restarted.maybe_set() is not None
    assert api.chain.weights(validator.ss58_address)[-1].uids == [0]


def _mirror(api: ApiServer, validator: bt.Wallet) -> FakeSubtensorNode:
    """A subtensor node holding the API's dev-chain registrations (same uids), plus ``validator``."""
    graph = api.chain.metagraph()
    coldkey = Keypair.create_from_seed(os.urandom(32)).ss58_address
    neurons = [FakeNeuron(n.hotkey, coldkey) for n in graph.neurons]
    neurons.append(FakeNeuron(validator.hotkey.ss58_address, coldkey, validator_permit=True, last_update=1))
    return FakeSubtensorNode(netuid=graph.netuid, owner_hotkey=graph.neurons[0].hotkey, owner_coldkey=coldkey,
                             neurons=neurons)  # fmt: skip


def test_the_subnets_limits_and_rate_limit_are_obeyed(
    start_api: Callable[..., ApiServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setenv("BTCLI_TOKEN_SYMBOLS_CACHE", str(tmp_path / "token_symbols.json"))
    api = start_api("sqlite")
    assert api.get("/v1/weights").json()["uids"] == [0]  # no round finalized yet: all to the burn uid
    wallet = bt.Wallet("v", "default", path=str(tmp_path / "wallets"))
    wallet.create_new_coldkey(use_password=False, suppress=True)
    wallet.create_new_hotkey(suppress=True)
    node = _mirror(api, wallet)
    node.min_allowed_weights, node.max_weights_limit = 4, 32767  # at least 4 uids, none above half
    me = len(node.neurons) - 1
    chain = SubtensorChain("finney", netuid=node.netuid, substrate=node)
    setter = WeightSetter(ValidatorApiClient(api.base_url), chain, wallet, 360, burn_uid=0)

    first = setter.maybe_set()
    assert first is not None and first.uids == [0, 1, 2, 3]  # the burn uid and the three lowest others
    stored = dict(node.weights[me])
    assert max(stored, key=stored.__getitem__) == 0
    assert stored[0] * 65535 <= node.max_weights_limit * sum(stored.values())  # what the runtime checks

    # Set again at once: refused as too soon, and not tried again until weights_rate_limit has passed.
    with caplog.at_level(logging.WARNING, logger="quasar.validator.weights"):
        assert setter.maybe_set(force=True) is None
    assert setter.not_before == node.block + node.weights_rate_limit
    assert "not trying again for 100 blocks (the subnet's weights_rate_limit)" in caplog.text
    asked = len(node.requests)
    for _ in range(3):
        assert setter.maybe_set(force=True) is None
    assert set(node.requests[asked:]) == {("block_number",)}  # only the block was read, nothing sent
    node.block = setter.not_before
    assert setter.maybe_set(force=True) is not None and len(node.extrinsics) == 2

    # The runtime's own SettingWeightsTooFast (the preflight saw nothing) backs off the same way.
    node.neurons[me].last_update = 1
    node.runtime_refusals.append(("SettingWeightsTooFast", "weights were set again too soon"))
    block = node.block
    assert setter.maybe_set(force=True) is None and setter.not_before == block + node.weights_rate_limit
    chain.close()
