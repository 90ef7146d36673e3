"""SubtensorChain driven through the real bittensor SDK 11, offline.

The SDK's `substrate=` hook replaces its websocket backend with `FakeSubtensorNode`, an in-memory
stand-in for the remote node defined in `conftest.py` (its docstring lists what it answers). Everything
between our adapter and that seam is the real SDK: client, metagraph decoding, the SetWeights and
ServeAxon intents (preflight, conforming, u16 quantisation), the executor and the wallet signer.
Keys are real sr25519 wallets created in a temp dir.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bittensor as bt
import pytest

from quasar.chain import get_chain
from quasar.chain.base import ChainError, ChainUnavailable, WeightLimits, WeightsRateLimited, WeightsRejected
from quasar.chain.devchain import DevChain
from quasar.chain.subtensor import SubtensorChain
from quasar.config import Settings
from quasar.validator.weights import fit_to_limits

NETUID = 24
# The node fixture is conftest.FakeSubtensorNode; conftest modules are not importable by name.
Node = Any


@pytest.fixture
def chain(node: Node) -> Iterator[SubtensorChain]:
    adapter = SubtensorChain("finney", netuid=NETUID, substrate=node)
    yield adapter
    adapter.close()


def test_current_block_comes_from_the_node(chain: SubtensorChain, node: Node) -> None:
    assert chain.current_block() == node.block
    node.block += 7
    assert chain.current_block() == node.block
    assert node.connects == 1  # one connection, reused


def test_metagraph_maps_uids_keys_stake_permits_axons_and_owner(
    chain: SubtensorChain, node: Node, wallets: dict[str, bt.Wallet]
) -> None:
    graph = chain.metagraph()
    assert graph.netuid == NETUID and graph.block == node.block
    assert graph.owner_hotkey == wallets["owner"].hotkey.ss58_address
    assert [n.uid for n in graph.neurons] == [0, 1, 2]

    validator = graph.get(wallets["validator"].hotkey.ss58_address)
    assert validator is not None and validator.uid == 1
    assert validator.coldkey == wallets["validator"].coldkeypub.ss58_address
    assert validator.validator_permit is True
    # total stake in alpha: 5000 alpha + 1000 TAO at the chain's 0.18 TAO weight
    assert validator.stake == pytest.approx(5_180.0)

    miner = graph.get(wallets["miner"].hotkey.ss58_address)
    assert miner is not None and miner.validator_permit is False and miner.stake == 0.0
    assert (miner.axon_ip, miner.axon_port) == ("203.0.113.7", 8001)
    assert miner.axon_url == "http://203.0.113.7:8001"
    owner = graph.get(wallets["owner"].hotkey.ss58_address)
    assert owner is not None and owner.axon_url is None
    assert ("runtime_call", "SubnetInfoRuntimeApi", "get_metagraph") in node.requests


def test_metagraph_of_a_missing_subnet_says_so(chain: SubtensorChain, node: Node) -> None:
    node.subnet_exists = False
    with pytest.raises(ChainError, match="subnet 24 does not exist.*NETUID"):
        chain.metagraph()


def test_set_weights_submits_the_extrinsic_signed_by_the_hotkey(
    chain: SubtensorChain, node: Node, wallets: dict[str, bt.Wallet]
) -> None:
    validator = wallets["validator"]
    ref = chain.set_weights(validator, [0, 2], [0.25, 0.75])

    (extrinsic,) = node.extrinsics
    assert ref == f"{extrinsic.block}-{extrinsic.index:04d}"
    assert extrinsic.signer == validator.hotkey.ss58_address  # the hotkey signs, not the coldkey
    assert (extrinsic.call.module, extrinsic.call.function) == ("SubtensorModule", "set_mechanism_weights")
    params = extrinsic.call.params
    assert params["netuid"] == NETUID and params["mecid"] == 0 and params["version_key"] == 0
    assert params["dests"] == [0, 2]
    # u16 quantised, max-upscaled: 0.75 -> 65535, 0.25 -> a third of it
    assert params["weights"] == [21845, 65535]
    assert node.weights[1] == [(0, 21845), (2, 65535)]


def test_set_weights_with_commit_reveal_on_submits_a_timelocked_commit(
    chain: SubtensorChain, node: Node, wallets: dict[str, bt.Wallet]
) -> None:
    node.commit_reveal = True
    chain.set_weights(wallets["validator"], [0], [1.0])
    (extrinsic,) = node.extrinsics
    assert extrinsic.call.function == "commit_timelocked_mechanism_weights"
    assert extrinsic.call.params["netuid"] == NETUID
    assert isinstance(extrinsic.call.params["commit"], bytes | bytearray)
    assert extrinsic.call.params["reveal_round"] > 0


def test_weights_refused_by_the_runtime_become_weights_rejected(
    chain: SubtensorChain, node: Node, wallets: dict[str, bt.Wallet]
) -> None:
    # The miner is registered but holds no permit: the SDK submits, the runtime refuses.
    with pytest.raises(WeightsRejected, match="NeuronNoValidatorPermit"):
        chain.set_weights(wallets["miner"], [0], [1.0])
    assert node.extrinsics == []


def test_unregistered_hotkey_is_refused_before_signing(
    chain: SubtensorChain, node: Node, wallets: dict[str, bt.Wallet]
) -> None:
    with pytest.raises(WeightsRejected, match="not registered on netuid 24"):
        chain.set_weights(wallets["stranger"], [0], [1.0])
    assert not any(r[0] == "compose" for r in node.requests)


def test_rate_limited_weights_say_how_long_to_wait(
    chain: SubtensorChain, node: Node, wallets: dict[str, bt.Wallet]
) -> None:
    node.neurons[1].last_update = node.block - 10
    with pytest.raises(WeightsRejected, match="rate limit is 100 blocks"):
        chain.set_weights(wallets["validator"], [0], [1.0])


def test_too_soon_is_weights_rate_limited_from_the_preflight_and_from_the_runtime(
    chain: SubtensorChain, node: Node, wallets: dict[str, bt.Wallet]
) -> None:
    node.neurons[1].last_update = node.block - 10  # the SDK's preflight sees it
    with pytest.raises(WeightsRateLimited, match="rate limit is 100 blocks"):
        chain.set_weights(wallets["validator"], [0], [1.0])
    node.neurons[1].last_update = 1
    # Another extrinsic of this hotkey landed after the preflight read: the runtime refuses by name.
    node.runtime_refusals.append(("SettingWeightsTooFast", "weights were set again too soon"))
    with pytest.raises(WeightsRateLimited, match="SettingWeightsTooFast"):
        chain.set_weights(wallets["validator"], [0], [1.0])
    # Other refusals are not mistaken for a rate limit.
    node.runtime_refusals.append(("IncorrectWeightVersionKey", "version_key is below the subnet's"))
    with pytest.raises(WeightsRejected, match="IncorrectWeightVersionKey") as refused:
        chain.set_weights(wallets["validator"], [0], [1.0])
    assert not isinstance(refused.value, WeightsRateLimited)
    assert node.extrinsics == []


def test_weight_limits_are_read_from_the_subnet(chain: SubtensorChain, node: Node) -> None:
    assert chain.weight_limits() == WeightLimits(rate_limit_blocks=100, min_allowed_weights=1, max_weight_share=1.0)
    node.weights_rate_limit, node.min_allowed_weights, node.max_weights_limit = 50, 8, 32767
    assert chain.weight_limits() == WeightLimits(50, 8, pytest.approx(0.5, abs=1e-4))


def test_a_burn_only_vector_is_fitted_to_min_allowed_weights_with_one_u16_step_each(
    chain: SubtensorChain, node: Node, wallets: dict[str, bt.Wallet]
) -> None:
    node.min_allowed_weights = 3
    with pytest.raises(WeightsRejected, match="requires at least 3 weights"):
        chain.set_weights(wallets["validator"], [0], [1.0])
    fitted = fit_to_limits({0: 1.0}, chain.weight_limits(), [0, 1, 2])
    chain.set_weights(wallets["validator"], list(fitted), list(fitted.values()))
    # the burn keeps all but the two smallest weights the chain can hold
    assert sorted(node.weights[1]) == [(0, 65535), (1, 1), (2, 1)]


def test_a_burn_only_vector_under_max_weight_limit_is_spread_so_the_runtime_accepts_it(
    chain: SubtensorChain, node: Node, wallets: dict[str, bt.Wallet]
) -> None:
    node.max_weights_limit = int(0.4 * 65535)
    # What the SDK makes of a single uid under a limit below 1: 65535 alone, which the runtime refuses.
    with pytest.raises(WeightsRejected, match="MaxWeightExceeded"):
        chain.set_weights(wallets["validator"], [0], [1.0])
    fitted = fit_to_limits({0: 1.0}, chain.weight_limits(), [0, 1, 2])
    assert sorted(fitted) == [0, 1, 2] and max(fitted, key=fitted.__getitem__) == 0
    chain.set_weights(wallets["validator"], list(fitted), list(fitted.values()))
    stored = dict(node.weights[1])
    assert stored[0] / sum(stored.values()) == pytest.approx(0.4, abs=0.01)
    assert stored[0] * 65535 <= node.max_weights_limit * sum(stored.values())


def test_version_key_is_a_setting_sent_with_the_weights(node: Node, wallets: dict[str, bt.Wallet]) -> None:
    assert Settings(_env_file=None, subtensor_network="finney").weights_version_key == 0
    configured = get_chain(Settings(_env_file=None, subtensor_network="finney", weights_version_key=7))
    assert isinstance(configured, SubtensorChain) and configured.version_key == 7
    chain = SubtensorChain("finney", netuid=NETUID, substrate=node, version_key=configured.version_key)
    chain.set_weights(wallets["validator"], [0, 2], [0.5, 0.5])
    assert node.extrinsics[0].call.params["version_key"] == 7
    chain.close()


def test_bad_weight_vectors_are_refused_locally(chain: SubtensorChain, node: Node, wallets) -> None:
    with pytest.raises(WeightsRejected, match="must pair up"):
        chain.set_weights(wallets["validator"], [0, 1], [1.0])
    with pytest.raises(WeightsRejected, match="all weights are zero"):
        chain.set_weights(wallets["validator"], [0, 1], [0.0, 0.0])
    with pytest.raises(WeightsRejected, match="Duplicate UIDs"):
        chain.set_weights(wallets["validator"], [0, 0], [1.0, 1.0])
    assert node.extrinsics == []


def test_serve_axon_publishes_the_miner_address(
    chain: SubtensorChain, node: Node, wallets: dict[str, bt.Wallet]
) -> None:
    miner = wallets["miner"]
    chain.serve_axon(miner, "198.51.100.20", 8011)
    (extrinsic,) = node.extrinsics
    assert extrinsic.signer == miner.hotkey.ss58_address
    assert extrinsic.call.function == "serve_axon"
    assert extrinsic.call.params["port"] == 8011 and extrinsic.call.params["ip_type"] == 4
    served = chain.metagraph().get(miner.hotkey.ss58_address)
    assert served is not None and served.axon_url == "http://198.51.100.20:8011"

    with pytest.raises(ChainError, match="HotKeyNotRegisteredInNetwork"):
        chain.serve_axon(wallets["stranger"], "198.51.100.21", 8011)
    with pytest.raises(ValueError, match="not an IP address"):
        chain.serve_axon(miner, "miner.example.com", 8011)


def test_a_write_with_no_answer_is_unavailable_and_says_it_may_land(node: Node, wallets) -> None:
    node.submit_stalls = True
    chain = SubtensorChain("finney", netuid=NETUID, substrate=node, write_timeout_seconds=0.3)
    with pytest.raises(ChainUnavailable, match="no answer to set_weights within 0.3s.*may still be included"):
        chain.set_weights(wallets["validator"], [0], [1.0])
    node.submit_stalls = False
    assert chain.current_block() == node.block  # redialled after the timeout
    assert node.connects == 2
    chain.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_endpoint_is_chain_unavailable_quickly(wallets: dict[str, bt.Wallet]) -> None:
    url = f"ws://127.0.0.1:{_closed_port()}"
    chain = SubtensorChain(url, netuid=NETUID)
    started = time.monotonic()
    with pytest.raises(ChainUnavailable) as info:
        chain.current_block()
    with pytest.raises(ChainUnavailable):
        chain.metagraph()
    with pytest.raises(ChainUnavailable):
        chain.set_weights(wallets["validator"], [0], [1.0])
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert url in message and "Check that the node is running" in message
    chain.close()


def test_a_silent_node_times_out_as_chain_unavailable() -> None:
    # A TCP listener that accepts and never answers the websocket handshake.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"ws://127.0.0.1:{server.getsockname()[1]}"
        chain = SubtensorChain(url, netuid=NETUID, timeout_seconds=0.5)
        started = time.monotonic()
        with pytest.raises(ChainUnavailable, match=r"no answer to the current block within 0.5s"):
            chain.current_block()
        assert time.monotonic() - started < 5
        chain.close()


def test_unknown_network_names_are_a_clear_configuration_error() -> None:
    with pytest.raises(ValueError, match="SUBTENSOR_NETWORK='mainnet'.*'finney'"):
        SubtensorChain("mainnet", netuid=NETUID)


def test_get_chain_picks_the_adapter_by_network(tmp_path: Path) -> None:
    dev = get_chain(Settings(_env_file=None, subtensor_network="embedded", quasar_home=tmp_path))
    assert isinstance(dev, DevChain) and dev.block_time_seconds == 1.0
    real = get_chain(Settings(_env_file=None, subtensor_network="test", netuid=3))
    assert isinstance(real, SubtensorChain)  # built cold: nothing is dialled until the first call
    assert (real.endpoint, real.netuid, real.block_time_seconds) == ("wss://test.finney.opentensor.ai:443", 3, 12.0)
