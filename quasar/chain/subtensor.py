"""The real chain, through the bittensor SDK 11 (`bt.Subtensor`).

`SubtensorChain` implements the `Chain` protocol for `finney`, `test`, `local` or any
`ws://`/`wss://` endpoint. It owns one private event loop on a daemon thread and drives the SDK's
async client on it (`await bt.Subtensor(...)`), so every call can carry its own deadline: the SDK's
blocking facade has none, and a node that stops answering would otherwise hold an API request for
minutes. A connection that fails is dropped and redialled on the next call.

Errors: anything that means "could not talk to the node" becomes `ChainUnavailable` naming the
endpoint; a refused `set_weights` (unregistered hotkey, no permit, rate limit, ...) becomes
`WeightsRejected` carrying the chain's reason (`WeightsRateLimited` when it was set too recently).
`version_key` (WEIGHTS_VERSION_KEY) is sent with every weight vector. `substrate=` swaps the SDK's
RPC backend for any object that implements its `bittensor.Substrate` contract; the offline tests
use it to stand in for the remote node.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import bittensor as bt
from bittensor.settings import U16_MAX, resolve_endpoint

from quasar.chain.base import (
    ChainError,
    ChainUnavailable,
    Metagraph,
    Neuron,
    WeightLimits,
    WeightsRateLimited,
    WeightsRejected,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Failures that mean the node could not be reached or stopped answering, as the SDK raises them.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    bt.RpcConnectionError,
    bt.ConnectionNotReady,
    ConnectionError,
    OSError,
    TimeoutError,
)


class _LoopThread:
    """One asyncio loop on a daemon thread; `run` blocks the calling thread on a coroutine."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()  # type: ignore[arg-type]

    def stop(self) -> None:
        async def cancel_the_rest() -> None:
            # e.g. a dial abandoned at its deadline, still inside the SDK's transport
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if threading.current_thread() is self._thread:
            self.loop.stop()
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_the_rest(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


def _parse_axon(endpoint: str | None) -> tuple[str | None, int | None]:
    """("1.2.3.4", 8091) from the SDK's "1.2.3.4:8091" / "[::1]:8091"; (None, None) when unserved."""
    if not endpoint:
        return None, None
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]")
    try:
        return host, int(port)
    except ValueError:
        return None, None


class SubtensorChain:
    """The `Chain` protocol on a real subtensor node.

    Metagraph mapping: `stake` is the neuron's `total_stake` on this subnet as a float in the
    subnet's **alpha** units, not TAO (the chain's stake weight: alpha stake plus root TAO stake at
    the chain's TAO weight), so MIN_VALIDATOR_STAKE is in alpha too; `coldkey` is the owning
    coldkey; the axon is the served ip:port (None when nothing is served); `owner_hotkey` is the
    subnet owner's hotkey from the chain's metagraph record.

    `timeout_seconds` bounds each read (connecting included); `write_timeout_seconds` bounds an
    extrinsic until it is included in a block. `block_time_seconds` is what `CachedChain` uses to
    estimate the block during an outage.
    """

    def __init__(
        self,
        network: str,
        *,
        netuid: int,
        substrate: Any | None = None,
        timeout_seconds: float = 30.0,
        write_timeout_seconds: float = 120.0,
        block_time_seconds: float = 12.0,
        version_key: int = 0,
    ) -> None:
        try:
            label, endpoint = resolve_endpoint(network)
        except ValueError as exc:
            raise ValueError(
                f"SUBTENSOR_NETWORK={network!r} is not a network this project can use: set it to "
                "'embedded' (local dev chain), 'finney', 'test', 'local' or a ws:// / wss:// URL"
            ) from exc
        self.network = label
        self.endpoint = endpoint
        self.netuid = netuid
        self.timeout_seconds = timeout_seconds
        self.write_timeout_seconds = write_timeout_seconds
        self.block_time_seconds = block_time_seconds
        self.version_key = version_key
        self._requested_network = network
        self._substrate = substrate
        self._client: Any | None = None
        self._connect_lock: asyncio.Lock | None = None
        self._loop: _LoopThread | None = None
        self._loop_guard = threading.Lock()

    def __repr__(self) -> str:
        return f"SubtensorChain(network={self.network!r}, endpoint={self.endpoint!r}, netuid={self.netuid})"

    # --- plumbing -----------------------------------------------------------------------------
    def _loop_thread(self) -> _LoopThread:
        with self._loop_guard:
            if self._loop is None:
                self._loop = _LoopThread(f"subtensor-{self.network}")
            return self._loop

    def _unreachable(self, detail: object, *, write: bool = False) -> ChainUnavailable:
        then = (
            "the extrinsic may still be included, so check the chain before sending it again."
            if write
            else "the call is retried on the next use."
        )
        return ChainUnavailable(
            f"cannot reach the subtensor node at {self.endpoint} (SUBTENSOR_NETWORK={self._requested_network!r}): "
            f"{detail}. Check that the node is running and reachable from this machine "
            f"(firewall, DNS, TLS) and that SUBTENSOR_NETWORK names the chain you mean; {then}"
        )

    async def _connected(self) -> Any:
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._client is None:
                # Awaiting a Subtensor connects the SDK's async client on this (our) loop.
                self._client = await bt.Subtensor(self._requested_network, substrate=self._substrate)
            return self._client

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), timeout=5)

    async def _guarded(self, op: Callable[[Any], Awaitable[T]], timeout: float, what: str, write: bool) -> T:
        try:
            return await asyncio.wait_for(self._with_client(op), timeout=timeout)
        except TimeoutError as exc:
            # The connection may be wedged; dial afresh next time.
            await self._drop_client()
            raise self._unreachable(f"no answer to {what} within {timeout:g}s", write=write) from exc
        except _CONNECTION_ERRORS as exc:
            await self._drop_client()
            raise self._unreachable(exc) from exc

    async def _with_client(self, op: Callable[[Any], Awaitable[T]]) -> T:
        return await op(await self._connected())

    def _call(self, op: Callable[[Any], Awaitable[T]], *, timeout: float, what: str, write: bool = False) -> T:
        return self._loop_thread().run(self._guarded(op, timeout, what, write))

    def close(self) -> None:
        """Close the connection and stop the private loop (optional; both are daemonic)."""
        with self._loop_guard:
            loop, self._loop = self._loop, None
        if loop is not None:
            with contextlib.suppress(Exception):
                loop.run(self._drop_client())
            loop.stop()

    # --- Chain protocol -----------------------------------------------------------------------
    def current_block(self) -> int:
        async def op(client: Any) -> int:
            return int(await client.block())

        try:
            return self._call(op, timeout=self.timeout_seconds, what="the current block")
        except bt.BittensorError as exc:
            raise ChainError(f"reading the current block from {self.endpoint} failed: {exc}") from exc

    def metagraph(self) -> Metagraph:
        async def op(client: Any) -> Any:
            return await client.subnets.metagraph(self.netuid, commitments=False)

        try:
            graph = self._call(op, timeout=self.timeout_seconds, what="the metagraph")
        except bt.BittensorError as exc:
            raise ChainError(f"reading the metagraph of netuid {self.netuid} failed: {exc}") from exc
        if graph is None:
            raise ChainError(
                f"subnet {self.netuid} does not exist on {self.network} ({self.endpoint}); check NETUID"
            )
        neurons = []
        for n in graph.neurons:
            ip, port = _parse_axon(n.axon)
            neurons.append(
                Neuron(
                    uid=int(n.uid),
                    hotkey=str(n.hotkey),
                    coldkey=str(n.coldkey) if n.coldkey else None,
                    stake=float(n.total_stake.amount),
                    validator_permit=bool(n.validator_permit),
                    axon_ip=ip,
                    axon_port=port,
                )
            )
        return Metagraph(
            netuid=self.netuid,
            block=int(graph.block),
            neurons=tuple(neurons),
            owner_hotkey=str(graph.owner_hotkey) if graph.owner_hotkey else None,
        )

    def set_weights(self, wallet: object, uids: Sequence[int], weights: Sequence[float]) -> str:
        """Set weights with the wallet's hotkey; returns the extrinsic id ("block-index").

        The SDK conforms the weights to the subnet (max-weight clip, u16 quantisation) and picks
        plain or timelocked commit-reveal submission by the subnet's settings. Waits for inclusion,
        not finality: inclusion already tells whether the chain accepted the call.
        """
        if len(uids) != len(weights):
            raise WeightsRejected(f"{len(uids)} uids but {len(weights)} weights; they must pair up")
        if not any(w > 0 for w in weights):
            raise WeightsRejected("all weights are zero; give at least one uid (e.g. the burn uid) a weight")
        try:
            intent = bt.SetWeights(
                netuid=self.netuid,
                uids=[int(u) for u in uids],
                weights=[float(w) for w in weights],
                version_key=self.version_key,
            )
        except bt.BittensorError as exc:
            raise WeightsRejected(str(exc)) from exc
        result = self._submit(intent, wallet, what="set_weights", rejected=WeightsRejected)
        return str(result.extrinsic_id or result.block_hash or "submitted")

    def weight_limits(self) -> WeightLimits:
        """The subnet's `weights_rate_limit`, `min_allowed_weights` and `max_weight_limit` (read now)."""

        async def op(client: Any) -> tuple[Any, Any, Any]:
            return await asyncio.gather(
                client.query(bt.storage.SubtensorModule.WeightsSetRateLimit, [self.netuid]),
                client.query(bt.storage.SubtensorModule.MinAllowedWeights, [self.netuid]),
                client.query(bt.storage.SubtensorModule.MaxWeightsLimit, [self.netuid]),
            )

        try:
            rate, least, most = self._call(op, timeout=self.timeout_seconds, what="the weight limits")
        except bt.BittensorError as exc:
            raise ChainError(f"reading the weight limits of netuid {self.netuid} failed: {exc}") from exc
        return WeightLimits(
            rate_limit_blocks=int(rate or 0),
            min_allowed_weights=int(least or 0),
            max_weight_share=(U16_MAX if most is None else int(most)) / U16_MAX,
        )

    # --- miners -------------------------------------------------------------------------------
    def serve_axon(self, wallet: object, ip: str, port: int) -> str:
        """Publish the wallet hotkey's ip:port on the subnet (ServeAxon), e.g. a miner's
        inference server. Raises `ChainError` with the chain's reason when refused (not
        registered, serving rate limit, ...)."""
        try:
            ipaddress.ip_address(ip)
        except ValueError as exc:
            raise ValueError(f"{ip!r} is not an IP address; publish the server's public IPv4/IPv6 address") from exc
        if not 0 < int(port) < 65536:
            raise ValueError(f"port {port} is outside 1..65535")
        intent = bt.ServeAxon(netuid=self.netuid, ip=ip, port=int(port))
        result = self._submit(intent, wallet, what="serve_axon", rejected=ChainError)
        return str(result.extrinsic_id or result.block_hash or "submitted")

    def _submit(self, intent: Any, wallet: object, *, what: str, rejected: type[ChainError]) -> Any:
        async def op(client: Any) -> Any:
            return await client.execute(
                intent, wallet, wait_for_inclusion=True, wait_for_finalization=False, retries=2
            )

        try:
            result = self._call(op, timeout=self.write_timeout_seconds, what=what, write=True)
        except ChainUnavailable:
            raise
        except bt.ChainError as exc:
            # Preflight refusals (not registered, rate limited, ...) arrive as ChainError.
            raise _refusal(rejected, exc)(f"{what} refused: {_reason(exc)}") from exc
        except bt.BittensorError as exc:
            raise rejected(f"{what} refused: {exc}") from exc
        if not result.success:
            detail = _reason(result.error) if result.error else result.message
            raise _refusal(rejected, result.error)(f"{what} refused by the chain: {detail}")
        return result


def _refusal(rejected: type[ChainError], error: Any) -> type[ChainError]:
    """`WeightsRateLimited` for a weight vector refused as too soon (SettingWeightsTooFast, or the
    SDK's preflight of the same rule), else ``rejected``."""
    if rejected is WeightsRejected and getattr(error, "code", None) == bt.ErrorCode.RATE_LIMITED:
        return WeightsRateLimited
    return rejected


def _reason(error: Any) -> str:
    """The chain's message plus the error's name and what to do, when the SDK knows them."""
    message = str(getattr(error, "message", None) or error)
    name = getattr(error, "name", None)
    parts = [f"{name}: {message}" if name and name not in message else message]
    remediation = getattr(error, "remediation", None)
    if remediation:
        parts.append(f"({remediation})")
    return " ".join(parts)
