"""Chain test fixtures, and an in-memory stand-in for a remote subtensor node behind the SDK's
`bittensor.Substrate` contract.

`bt.Subtensor(network, substrate=...)` accepts any object implementing that contract in place of
its websocket RPC backend. This fake answers the calls the SDK 11.3 code paths that
`quasar.chain.subtensor` uses actually make (found by reading `bittensor/client.py`,
`metagraph.py`, `executor.py`, `intents/weights.py`, `intents/serving.py`):

* connect: `connect`, `query_map(SubtensorModule.TokenSymbol)` (display symbols);
* `client.block()`: `block_number`;
* `client.subnets.metagraph()`: `block_number`, `block_hash`, and the runtime API
  `SubnetInfoRuntimeApi.get_metagraph` (answered with the decoded record shape `metagraph._build`
  reads);
* `execute(SetWeights | ServeAxon)`: the weight preflight storage reads (`Uids`, `LastUpdate`,
  `WeightsSetRateLimit`, ...), the timelock schedule reads when commit-reveal is on, `compose`,
  `estimate_fee`, and `submit`, which checks the sr25519 signature of the signer over the call
  before applying it, and refuses like the chain does (`NeuronNoValidatorPermit`,
  `SettingWeightsTooFast`, `WeightVecLengthIsLow`, `MaxWeightExceeded`, ...); `runtime_refusals`
  scripts refusals the SDK's preflight cannot foresee (e.g. another extrinsic landing first).

Reads it does not know raise, so a change in what the SDK reads fails the tests loudly instead of
being answered with a made-up value. It stands in for the node only: our own code runs for real.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bittensor as bt
import pytest
from bittensor.sp_core import Keypair

RAO = 10**9
NETUID = 24


@dataclass
class FakeNeuron:
    hotkey: str
    coldkey: str
    validator_permit: bool = False
    alpha_stake_rao: int = 0
    tao_stake_rao: int = 0
    axon_ip: int = 0
    axon_port: int = 0
    axon_ip_type: int = 4
    last_update: int = 0


@dataclass
class ComposedCall:
    """What `compose` hands back: the SDK only inspects module/function/params and `.value`."""

    module: str
    function: str
    params: dict[str, Any]

    @property
    def value(self) -> dict[str, Any]:
        return {
            "call_module": self.module,
            "call_function": self.function,
            "call_args": [{"name": k, "value": v} for k, v in self.params.items()],
        }

    @property
    def data(self) -> bytes:
        # Stands in for the SCALE bytes: a canonical encoding the signature is checked over.
        return json.dumps(
            [self.module, self.function, self.params], sort_keys=True, default=_bytes_hex
        ).encode()


def _bytes_hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    raise TypeError(type(value).__name__)


@dataclass
class SubmittedExtrinsic:
    signer: str
    call: ComposedCall
    nonce: int
    block: int
    index: int


@dataclass
class FakeSubtensorNode:
    netuid: int
    owner_hotkey: str
    owner_coldkey: str
    block: int = 4_000_000
    tempo: int = 360
    commit_reveal: bool = False
    weights_rate_limit: int = 100
    min_allowed_weights: int = 1
    max_weights_limit: int = 65535  # u16: 65535 is no limit
    runtime_refusals: list[tuple[str, str]] = field(default_factory=list)  # (error name, docs), next first
    neurons: list[FakeNeuron] = field(default_factory=list)
    subnet_exists: bool = True
    token_symbols: dict[int, str] = field(default_factory=dict)
    extrinsics: list[SubmittedExtrinsic] = field(default_factory=list)
    requests: list[tuple[str, ...]] = field(default_factory=list)
    connects: int = 0
    submit_stalls: bool = False  # the node takes the extrinsic and never reports on it
    nonces: dict[str, int] = field(default_factory=dict)
    weights: dict[int, list[tuple[int, int]]] = field(default_factory=dict)

    # --- the contract's display helpers ---------------------------------------------------------
    def balance(self, rao: int, netuid: int = 0) -> bt.Balance:
        return bt.Balance(int(rao), netuid, self.token_symbols.get(netuid) if netuid else None)

    # --- lifecycle ------------------------------------------------------------------------------
    async def connect(self) -> None:
        self.connects += 1

    async def close(self) -> None:
        return None

    # --- chain identity -------------------------------------------------------------------------
    async def block_hash(self, block: int | None = None) -> str:
        self.requests.append(("block_hash", str(block)))
        return "0x" + f"{self.block if block is None else block:064x}"

    async def block_number(self) -> int:
        self.requests.append(("block_number",))
        return self.block

    async def finalized_block_number(self) -> int:
        return self.block - 2

    async def block_time(self) -> float:
        return 12.0

    async def spec_version(self) -> int:
        return 300

    # --- storage --------------------------------------------------------------------------------
    def _uid(self, hotkey: str) -> int | None:
        for uid, neuron in enumerate(self.neurons):
            if neuron.hotkey == hotkey:
                return uid
        return None

    async def query(
        self, module: str, storage_function: str, params: list | None = None, block_hash: str | None = None
    ) -> Any:
        params = list(params or [])
        self.requests.append(("query", module, storage_function))
        if module != "SubtensorModule":
            raise NotImplementedError(f"fake node has no storage {module}.{storage_function}")
        on_subnet = bool(params) and params[0] == self.netuid and self.subnet_exists
        match storage_function:
            case "Uids":
                return self._uid(params[1]) if on_subnet else None
            case "CommitRevealWeightsEnabled":
                return self.commit_reveal
            case "WeightsSetRateLimit":
                return self.weights_rate_limit
            case "LastUpdate":
                return [n.last_update for n in self.neurons]
            case "MinAllowedWeights":
                return self.min_allowed_weights
            case "MaxWeightsLimit":
                return self.max_weights_limit
            case "SubnetEpochConsensus":
                return "Yuma"
            case "ValidatorPermit":
                return [n.validator_permit for n in self.neurons]
            case "Tempo":
                return self.tempo
            case "RevealPeriodEpochs":
                return 1
            case "LastEpochBlock":
                return self.block - self.block % self.tempo
            case "PendingEpochAt":
                return 0
            case "SubnetEpochIndex":
                return self.block // self.tempo
            case "BlocksSinceLastStep":
                return self.block % self.tempo
        raise NotImplementedError(f"fake node has no storage SubtensorModule.{storage_function}")

    async def query_map(
        self, module: str, storage_function: str, params: list | None = None, block_hash: str | None = None
    ) -> list[tuple[Any, Any]]:
        self.requests.append(("query_map", module, storage_function))
        if (module, storage_function) == ("SubtensorModule", "TokenSymbol"):
            return [(self.netuid, list("ϙ".encode()))]
        raise NotImplementedError(f"fake node has no storage map {module}.{storage_function}")

    async def query_batch(self, module: str, storage_function: str, param_sets: list[list], block_hash=None):
        return [await self.query(module, storage_function, p, block_hash) for p in param_sets]

    async def constant(self, module: str, name: str) -> Any:
        raise NotImplementedError(f"fake node has no constant {module}.{name}")

    # --- runtime APIs ---------------------------------------------------------------------------
    async def runtime_call(self, api: str, method: str, params: list, block_hash: str | None = None) -> Any:
        self.requests.append(("runtime_call", api, method))
        if (api, method) != ("SubnetInfoRuntimeApi", "get_metagraph"):
            raise NotImplementedError(f"fake node has no runtime API {api}.{method}")
        if params != [self.netuid] or not self.subnet_exists:
            return None
        ns = self.neurons
        return {
            "netuid": self.netuid,
            "name": list(b"quasar"),
            "symbol": list("ϙ".encode()),
            "block": int(block_hash, 16) if block_hash else self.block,
            "tempo": self.tempo,
            "last_step": self.block - self.block % self.tempo,
            "blocks_since_last_step": self.block % self.tempo,
            "owner_hotkey": self.owner_hotkey,
            "owner_coldkey": self.owner_coldkey,
            "network_registered_at": 100,
            "num_uids": len(ns),
            "max_uids": 256,
            "hotkeys": [n.hotkey for n in ns],
            "coldkeys": [n.coldkey for n in ns],
            "identities": [None for _ in ns],
            "axons": [
                {"ip": n.axon_ip, "port": n.axon_port, "ip_type": n.axon_ip_type, "protocol": 4, "version": 1}
                for n in ns
            ],
            "active": [True for _ in ns],
            "validator_permit": [n.validator_permit for n in ns],
            "last_update": [n.last_update for n in ns],
            "block_at_registration": [200 + uid for uid in range(len(ns))],
            "rank": [0 for _ in ns],
            "trust": [0 for _ in ns],
            "consensus": [0 for _ in ns],
            "incentives": [0 for _ in ns],
            "dividends": [0 for _ in ns],
            "pruning_score": [0 for _ in ns],
            "emission": [0 for _ in ns],
            "alpha_stake": [n.alpha_stake_rao for n in ns],
            "tao_stake": [n.tao_stake_rao for n in ns],
            # The chain's stake weight: alpha plus root TAO at the chain's TAO weight (0.18).
            "total_stake": [n.alpha_stake_rao + int(n.tao_stake_rao * 0.18) for n in ns],
            "tao_in": 1000 * RAO,
            "alpha_in": 4000 * RAO,
        }

    async def decode_scale(self, type_string: str, data: Any) -> Any:
        raise NotImplementedError("fake node does not decode SCALE")

    async def events(self, block_hash: str | None = None) -> list[dict]:
        return []

    # --- calls ----------------------------------------------------------------------------------
    async def compose(self, call: Any) -> ComposedCall:
        module, function, params = call
        self.requests.append(("compose", module, function))
        return ComposedCall(module, function, dict(params))

    async def estimate_fee(self, call: Any, keypair: Any) -> bt.Balance:
        return bt.Balance.from_rao(12_345)

    async def account_next_index(self, address: str) -> int:
        return self.nonces.get(address, 0)

    async def submit(
        self,
        call: ComposedCall,
        keypair: Any,
        *,
        nonce: int | None = None,
        period: int | None = None,
        wait_for_inclusion: bool = True,
        wait_for_finalization: bool = True,
    ) -> bt.ExtrinsicResult:
        if self.submit_stalls:
            await asyncio.Event().wait()
        signer = keypair.ss58_address
        nonce = self.nonces.get(signer, 0) if nonce is None else nonce
        payload = call.data + nonce.to_bytes(8, "little")
        signature = keypair.sign(payload)
        # What the node checks first: the signature is the signer's own sr25519 signature.
        if not Keypair(ss58_address=signer).verify(payload, signature):
            return _failed("BadProof", "transaction has a bad signature")
        self.nonces[signer] = nonce + 1
        self.block += 1
        index = len([e for e in self.extrinsics if e.block == self.block]) + 1
        error = self._dispatch(signer, call)
        if error is not None:
            return _failed(*error, block=self.block, index=index)
        self.extrinsics.append(SubmittedExtrinsic(signer, call, nonce, self.block, index))
        if not wait_for_inclusion and not wait_for_finalization:
            return bt.ExtrinsicResult(success=True, message="Submitted (not waiting).")
        return bt.ExtrinsicResult(
            success=True,
            message="Success",
            block_hash=f"0x{self.block:064x}",
            extrinsic_id=f"{self.block}-{index:04d}",
            fee=bt.Balance.from_rao(12_345),
            events=[],
        )

    def _dispatch(self, signer: str, call: ComposedCall) -> tuple[str, str] | None:
        """Apply a call as the runtime would; (error name, docs) when it refuses."""
        uid = self._uid(signer)
        p = call.params
        if (call.module, call.function) == ("SubtensorModule", "set_mechanism_weights"):
            if uid is None:
                return "HotKeyNotRegisteredInSubNet", "the hotkey is not registered in this subnet"
            if not self.neurons[uid].validator_permit:
                return "NeuronNoValidatorPermit", "the caller does not hold a validator permit"
            if self.runtime_refusals:
                return self.runtime_refusals.pop(0)
            last = self.neurons[uid].last_update
            if self.weights_rate_limit and last > 0 and self.block - last < self.weights_rate_limit:
                return "SettingWeightsTooFast", "weights were set again before the rate limit elapsed"
            dests, values = p["dests"], p["weights"]
            if dests != [uid]:  # a lone self-weight is exempt from both rules
                if len(dests) < self.min_allowed_weights:
                    return "WeightVecLengthIsLow", "fewer weights than the subnet's minimum"
                if self.max_weights_limit < 65535 and max(values) * 65535 > self.max_weights_limit * sum(values):
                    return "MaxWeightExceeded", "a weight exceeds the subnet's maximum weight limit"
            self.weights[uid] = list(zip(dests, values, strict=True))
            self.neurons[uid].last_update = self.block
            return None
        if (call.module, call.function) == ("SubtensorModule", "commit_timelocked_mechanism_weights"):
            if uid is None:
                return "HotKeyNotRegisteredInSubNet", "the hotkey is not registered in this subnet"
            self.neurons[uid].last_update = self.block
            return None
        if (call.module, call.function) == ("SubtensorModule", "serve_axon"):
            if uid is None:
                return "HotKeyNotRegisteredInNetwork", "the hotkey is not registered in any subnet"
            neuron = self.neurons[uid]
            neuron.axon_ip, neuron.axon_port, neuron.axon_ip_type = p["ip"], p["port"], p["ip_type"]
            ipaddress.ip_address(p["ip"])  # the runtime stores a valid u128 address
            return None
        return "CallFiltered", f"fake node does not dispatch {call.module}.{call.function}"


def _failed(name: str, docs: str, *, block: int | None = None, index: int | None = None) -> bt.ExtrinsicResult:
    return bt.ExtrinsicResult(
        success=False,
        message=docs,
        block_hash=f"0x{block:064x}" if block is not None else None,
        extrinsic_id=f"{block}-{index:04d}" if block is not None and index is not None else None,
        error=bt.ChainError(docs, name),
    )


# --- fixtures -----------------------------------------------------------------------------------
def _wallet(root: Path, name: str) -> bt.Wallet:
    wallet = bt.Wallet(name, "default", path=str(root))
    wallet.create_new_coldkey(use_password=False, suppress=True)
    wallet.create_new_hotkey(suppress=True)
    return wallet


@pytest.fixture(autouse=True)
def _sdk_cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK caches subnet token symbols on disk at connect; keep that out of ~/.bittensor.
    monkeypatch.setenv("BTCLI_TOKEN_SYMBOLS_CACHE", str(tmp_path / "token_symbols.json"))


@pytest.fixture(scope="module")
def wallets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bt.Wallet]:
    root = tmp_path_factory.mktemp("wallets")
    return {name: _wallet(root, name) for name in ("owner", "validator", "miner", "stranger")}


@pytest.fixture
def node(wallets: dict[str, bt.Wallet]) -> FakeSubtensorNode:
    owner, validator, miner = wallets["owner"], wallets["validator"], wallets["miner"]
    return FakeSubtensorNode(
        netuid=NETUID,
        owner_hotkey=owner.hotkey.ss58_address,
        owner_coldkey=owner.coldkeypub.ss58_address,
        neurons=[
            FakeNeuron(owner.hotkey.ss58_address, owner.coldkeypub.ss58_address, False, 10 * RAO),
            FakeNeuron(
                validator.hotkey.ss58_address,
                validator.coldkeypub.ss58_address,
                validator_permit=True,
                alpha_stake_rao=5_000 * RAO,
                tao_stake_rao=1_000 * RAO,
                last_update=1,
            ),
            FakeNeuron(
                miner.hotkey.ss58_address,
                miner.coldkeypub.ss58_address,
                axon_ip=int.from_bytes(bytes([203, 0, 113, 7]), "big"),
                axon_port=8001,
            ),
        ],
    )


