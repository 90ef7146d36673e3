"""The embedded dev chain: wall-clock blocks, stable uids, roles, weights, and one file shared by processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from bittensor.sp_core import Keypair

from quasar.chain.base import ChainUnavailable, WeightsRejected
from quasar.chain.devchain import DevChain

ROOT = Path(__file__).resolve().parents[3]


def test_block_follows_the_wall_clock_and_advance(tmp_path: Path) -> None:
    chain = DevChain(tmp_path / "chain.sqlite", block_time_seconds=0.05)
    started = time.monotonic()
    first = chain.current_block()
    time.sleep(0.5)
    elapsed = time.monotonic() - started
    later = chain.current_block()
    # ~10 blocks of 50 ms went by; allow for scheduling on a busy machine
    assert 8 <= later - first <= elapsed / 0.05 + 1
    assert chain.advance(1000) >= later + 1000
    assert chain.current_block() >= later + 1000
    with pytest.raises(ValueError, match="only moves forward"):
        chain.advance(-1)


def test_a_second_handle_on_the_file_sees_the_same_height(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    DevChain(path, block_time_seconds=3600).advance(42)
    assert DevChain(path, block_time_seconds=3600).current_block() == 42


def test_uids_are_stable(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    chain = DevChain(path)
    assert [chain.register(h, "miner") for h in ("a", "b", "c")] == [0, 1, 2]
    assert chain.register("b", "validator", stake=5.0) == 1  # re-registering keeps the uid
    assert DevChain(path).register("d", "miner") == 3
    assert [(n.uid, n.hotkey) for n in DevChain(path).metagraph().neurons] == [
        (0, "a"),
        (1, "b"),
        (2, "c"),
        (3, "d"),
    ]


def test_roles_map_to_permits_stake_and_owner(tmp_path: Path) -> None:
    chain = DevChain(tmp_path / "chain.sqlite", netuid=7)
    owner, validator, miner = (Keypair.create_from_uri(f"//{n}").ss58_address for n in ("Alice", "Bob", "Eve"))
    chain.register(owner, "owner", stake=100.0)
    chain.register(validator, "validator", stake=2_000.0)
    chain.register(miner, "miner")
    graph = chain.metagraph()
    assert graph.netuid == 7 and graph.owner_hotkey == owner
    by_key = {n.hotkey: n for n in graph.neurons}
    assert by_key[validator].validator_permit and by_key[validator].stake == 2_000.0
    assert not by_key[miner].validator_permit and by_key[miner].stake == 0.0
    assert not by_key[owner].validator_permit
    assert chain.roles() == {owner: "owner", validator: "validator", miner: "miner"}
    with pytest.raises(ValueError, match="role must be one of"):
        chain.register(miner, "king")  # type: ignore[arg-type]


def test_set_weights_needs_a_registered_validator(tmp_path: Path) -> None:
    chain = DevChain(tmp_path / "chain.sqlite")
    validator, miner, stranger = (Keypair.create_from_uri(f"//{n}") for n in ("Bob", "Eve", "Ferdie"))
    chain.register(validator.ss58_address, "validator")
    chain.register(miner.ss58_address, "miner")

    with pytest.raises(WeightsRejected, match="not a registered validator"):
        chain.set_weights(stranger, [0], [1.0])
    with pytest.raises(WeightsRejected, match="not a registered validator"):
        chain.set_weights(miner, [0], [1.0])
    with pytest.raises(WeightsRejected, match="differ in length"):
        chain.set_weights(validator, [0, 1], [1.0])
    assert chain.weights() == []

    block = chain.set_weights(validator, [1, 0], [0.75, 0.25])
    (record,) = chain.weights()
    assert (record.hotkey, record.uids, record.weights, str(record.block)) == (
        validator.ss58_address,
        [1, 0],
        [0.75, 0.25],
        block,
    )
    assert chain.weights(stranger.ss58_address) == []


def test_serve_publishes_an_address(tmp_path: Path) -> None:
    chain = DevChain(tmp_path / "chain.sqlite")
    miner = Keypair.create_from_uri("//Eve")
    chain.register(miner.ss58_address, "miner")
    chain.serve(miner.ss58_address, "127.0.0.1", 8001)
    assert chain.metagraph().neurons[0].axon_url == "http://127.0.0.1:8001"
    chain.serve_axon(miner, "::1", 8002)  # the same call SubtensorChain offers
    assert chain.metagraph().neurons[0].axon_url == "http://[::1]:8002"
    with pytest.raises(ValueError, match="not registered"):
        chain.serve("5nobody", "127.0.0.1", 8001)


def test_an_unopenable_file_is_chain_unavailable(tmp_path: Path) -> None:
    (tmp_path / "chain.sqlite").mkdir()
    with pytest.raises(ChainUnavailable, match="chain.sqlite"):
        DevChain(tmp_path / "chain.sqlite").current_block()


_WORKER = textwrap.dedent(
    """
    import json, sys
    from quasar.chain.devchain import DevChain

    path, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    chain = DevChain(path, block_time_seconds=1.0)
    mine = {}
    for i in range(count):
        hotkey = f"{prefix}-{i:02d}"
        mine[hotkey] = chain.register(hotkey, "miner" if i % 2 else "validator", stake=float(i))
        graph = chain.metagraph()
        uids = [n.uid for n in graph.neurons]
        # every snapshot is a consistent prefix of the registrations: uids 0..n-1, hotkeys unique
        assert uids == list(range(len(uids))), uids
        assert len({n.hotkey for n in graph.neurons}) == len(uids)
        assert graph.get(hotkey).uid == mine[hotkey]
    print(json.dumps(mine))
    """
)


def test_two_processes_share_one_consistent_chain(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "chain.sqlite"  # neither process finds the file: both race to create it
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    count = 25
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), prefix, str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for prefix in ("alpha", "beta")
    ]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        results.append(json.loads(stdout))

    claimed = {**results[0], **results[1]}
    assert sorted(claimed.values()) == list(range(2 * count))  # no uid handed out twice
    graph = DevChain(path).metagraph()
    assert {n.hotkey: n.uid for n in graph.neurons} == claimed
