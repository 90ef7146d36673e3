"""``quasar miner`` (the same as ``python -m neurons.miner``): start the miner neuron, or show its state.

Takes the original subnet's bittensor-style flags (``--wallet.name``, ``--wallet.hotkey``,
``--subtensor.network``, ``--netuid``, ``--axon.port``); each overrides its setting from the
environment/.env (WALLET_MINER_NAME, WALLET_HOTKEY, SUBTENSOR_NETWORK, NETUID, MINER_INFERENCE_PORT).
Everything else comes from settings (quasar/config.py). Logs go to stderr.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from quasar.config import Settings, get_settings
from quasar.neuron import install_stop_handlers, register_hint, settings_from_flags

log = logging.getLogger("quasar.miner")

app = typer.Typer(
    help="The miner neuron: improve the kernel, commit–reveal it to the Validator API, follow its evaluation.",
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class MinerSetupError(RuntimeError):
    """Something the miner needs is missing or wrong; the message says what to do."""


def state_dir(settings: Settings) -> Path:
    return (settings.miner_state_dir or settings.quasar_home / "miner").expanduser()


def configure_logging(settings: Settings) -> None:
    # One set-up for every role (LOG_FORMAT=json gives one JSON object per line).
    from quasar.logging_setup import configure_logging as configure

    configure(settings, "miner")


def _load_wallet(settings: Settings) -> Any:
    from quasar.neuron import load_role_wallet
    from quasar.wallets import WalletNotFound

    try:
        return load_role_wallet(settings, settings.wallet_miner_name)
    except WalletNotFound as exc:
        raise MinerSetupError(str(exc)) from None


def _check_registration(settings: Settings, chain: Any, hotkey: str) -> Any:
    """The miner's neuron on the metagraph; on the embedded chain it registers itself if needed."""
    neuron = chain.metagraph().get(hotkey)
    if neuron is None:
        if settings.is_embedded:
            chain.register(hotkey, "miner")
            log.info("registered the dev hotkey %s as a miner on the dev chain", hotkey)
            return chain.metagraph().get(hotkey)
        raise MinerSetupError(
            f"hotkey {hotkey} is not registered on subnet {settings.netuid} ({settings.subtensor_network}); "
            f"register it first: {register_hint(settings, settings.wallet_miner_name)}"
        )
    return neuron


def _serve_axon(settings: Settings, chain: Any, wallet: Any, neuron: Any, port: int) -> str | None:
    """Publish the inference server's address on chain (ServeAxon) if it changed; returns the URL to
    reveal, or None when there is no address to publish (MINER_EXTERNAL_IP unset on a real chain)."""
    ip = settings.miner_external_ip or ("127.0.0.1" if settings.is_embedded else None)
    if ip is None:
        return None
    if neuron is None or neuron.axon_ip != ip or neuron.axon_port != port:
        from quasar.chain import ChainError

        try:
            chain.serve_axon(wallet, ip, port)
            log.info("published the inference server address %s:%d on chain", ip, port)
        except ChainError as exc:
            log.warning("could not publish %s:%d on chain (%s); continuing", ip, port, exc)
    host = f"[{ip}]" if ":" in ip else ip
    return settings.miner_inference_url or f"http://{host}:{port}"


def _check_api(client: Any, settings: Settings, *, once: bool) -> None:
    """Ask the API's /health first: with --once an API that does not answer ends the run (one line)."""
    from quasar.client import ApiError

    try:
        client.health()
        return
    except ApiError as exc:
        cause = exc.__cause__
        why = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    message = (
        f"the Validator API at {settings.validator_api_url} does not answer ({why}); check VALIDATOR_API_URL "
        "and that the API is up"
    )
    if once:
        raise MinerSetupError(message)
    log.warning("%s. The miner starts anyway and commits once the API answers", message)


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url.rstrip('/')}/health", timeout=3.0).status_code == 200
    except httpx.HTTPError:
        return False


def _check_inference_server(settings: Settings, port: int, inference_url: str | None) -> None:
    """Warn when the inference server answers neither locally nor at the revealed address."""
    local = [f"http://127.0.0.1:{p}" for p in dict.fromkeys((settings.miner_inference_port, port))]
    tried = list(dict.fromkeys([*local, *([inference_url] if inference_url else [])]))
    if any(_answers(url) for url in tried):
        return
    log.warning(
        "the inference server does not answer at %s: start it (./START_MINER_INFERENCE.sh or `quasar inference`), "
        "or validators' logit checks fail every submission (behind NAT the public address may not answer from "
        "inside; make sure the port is forwarded)", ", ".join(f"{u}/health" for u in tried),
    )  # fmt: skip


def build_miner(
    settings: Settings, stop: threading.Event, *, axon_port: int | None = None, once: bool = False
) -> Any:
    """Everything the loop needs, from the settings; raises MinerSetupError with what to fix.

    Before any bench, it refuses what cannot earn (one line each): an API that does not answer (with
    ``once``), no inference server address for validators while logit verification is on, candidates
    that cannot be sandboxed (without MINER_ALLOW_UNSANDBOXED_CANDIDATES), ``tune`` on a kernel that is
    not ``quasar kernel init``'s layout.
    """
    from quasar.chain import ChainUnavailable, get_chain
    from quasar.client import ValidatorApiClient
    from quasar.miner.bench import BenchRunner, CandidatesRefused, Isolation
    from quasar.miner.forge import ForgeError, resolve_remote
    from quasar.miner.loop import Miner, MinerOptions
    from quasar.miner.state import StateLocked, StateStore
    from quasar.miner.strategies import Context, make_strategy
    from quasar.miner.workspace import GitError, Workspace, default_source, has_template_layout

    directory = state_dir(settings)
    store = StateStore(directory)
    try:
        store.acquire()
    except StateLocked as exc:
        raise MinerSetupError(str(exc)) from None
    client = None
    try:
        wallet = _load_wallet(settings)
        hotkey = wallet.hotkey.ss58_address
        if settings.enable_logit_verification and not settings.is_embedded and not settings.miner_external_ip:
            raise MinerSetupError(
                "MINER_EXTERNAL_IP is not set, so no inference server address is published on chain, where "
                "validators look for it: every submission would fail logit verification, so none is committed. "
                "Set MINER_EXTERNAL_IP to this machine's public IP (with MINER_INFERENCE_PORT reachable there)"
            )
        client = ValidatorApiClient(settings.validator_api_url, wallet)
        _check_api(client, settings, once=once)
        chain = get_chain(settings)
        try:
            neuron = _check_registration(settings, chain, hotkey)
        except ChainUnavailable as exc:
            raise MinerSetupError(f"cannot reach the chain: {exc}") from None
        port = axon_port or settings.miner_inference_port
        inference_url = _serve_axon(settings, chain, wallet, neuron, port)
        if settings.enable_logit_verification:
            _check_inference_server(settings, port, inference_url)
        elif inference_url is None:
            inference_url = settings.miner_inference_url
        try:
            bench = BenchRunner(
                device=settings.device,
                quick=settings.miner_bench_quick,
                timeout_seconds=settings.miner_bench_timeout_seconds,
                stop=stop,
                isolation=Isolation(
                    allow_unsandboxed=settings.miner_allow_unsandboxed_candidates,
                    memory_bytes=settings.sandbox_memory_mb * 2**20,
                    max_pids=settings.sandbox_max_pids,
                    cgroup_parent=settings.sandbox_cgroup_parent,
                ),
            )
        except ValueError as exc:  # a DEVICE that is not one
            raise MinerSetupError(str(exc)) from None
        try:
            isolation = bench.check_isolation()
        except CandidatesRefused as exc:
            raise MinerSetupError(str(exc)) from None
        if settings.miner_allow_unsandboxed_candidates and isolation.startswith("WITHOUT"):
            log.warning("candidate kernels run %s", isolation)
        else:
            log.info("candidate kernels run %s", isolation)
        try:
            remote = resolve_remote(settings, directory)
            workspace = Workspace(settings.miner_workspace or directory / "workspace", settings.miner_branch)
            source = default_source(
                settings.target_repo_url,
                explicit="target_repo_url" in settings.model_fields_set,
                embedded=settings.is_embedded,
            )
            workspace.prepare(source=source, submit_url=remote.push_url, submit_env=remote.git_env())
        except (ForgeError, GitError) as exc:
            raise MinerSetupError(str(exc)) from None
        if settings.miner_strategy == "tune" and not has_template_layout(workspace.path):
            raise MinerSetupError(
                f"MINER_STRATEGY=tune has nothing to tune in {workspace.path}: its fla/ops/quasar/ is not "
                "`quasar kernel init`'s layout; use MINER_STRATEGY=agent or manual, or move the workspace aside "
                "to start from `quasar kernel init`"
            )
        state = store.load()
        context = Context(
            workspace=workspace,
            state=state,
            save=lambda: store.save(state),
            bench=bench,
            stop=stop,
            min_improvement=settings.miner_min_improvement,
        )
        options = MinerOptions(
            min_speedup=settings.miner_min_speedup,
            optimization_interval=float(settings.optimization_interval),
            block_time_seconds=settings.block_time_seconds or 12.0,
            inference_url=inference_url,
        )
        log.info(
            "miner %s on %s (netuid %d): API %s, strategy %s, workspace %s (branch %s), pushing to %s, "
            "revealing %s",
            hotkey, settings.subtensor_network, settings.netuid, settings.validator_api_url,
            settings.miner_strategy, workspace.path, workspace.branch, remote.push_url, remote.repo_url,
        )  # fmt: skip
        return Miner(
            client=client, chain=chain, remote=remote, strategy=make_strategy(settings), store=store,
            context=context, options=options, stop=stop,
        )  # fmt: skip
    except BaseException:
        if client is not None:
            client.close()
        store.release()
        raise


FLAG_ENV = {
    "wallet_name": "WALLET_MINER_NAME", "wallet_hotkey": "WALLET_HOTKEY", "network": "SUBTENSOR_NETWORK",
    "netuid": "NETUID", "strategy": "MINER_STRATEGY", "api_url": "VALIDATOR_API_URL",
}  # fmt: skip


@app.callback()
def miner(
    ctx: typer.Context,
    wallet_name: Annotated[
        str | None, typer.Option("--wallet.name", help="Wallet name (WALLET_MINER_NAME).")
    ] = None,
    wallet_hotkey: Annotated[
        str | None, typer.Option("--wallet.hotkey", help="Hotkey name (WALLET_HOTKEY).")
    ] = None,
    network: Annotated[
        str | None,
        typer.Option("--subtensor.network", help="embedded | finney | test | ws://... (SUBTENSOR_NETWORK)."),
    ] = None,
    netuid: Annotated[int | None, typer.Option("--netuid", help="Subnet uid (NETUID).")] = None,
    axon_port: Annotated[
        int | None,
        typer.Option(
            "--axon.port", help="Port of the inference server published on chain (MINER_INFERENCE_PORT)."
        ),
    ] = None,
    strategy: Annotated[
        str | None, typer.Option("--strategy", help="tune | agent | manual (MINER_STRATEGY).")
    ] = None,
    api_url: Annotated[
        str | None, typer.Option("--api-url", help="Validator API URL (VALIDATOR_API_URL).")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Run one cycle (improve, submit, reveal) and exit.")
    ] = False,
) -> None:
    """Run the miner until SIGTERM/Ctrl-C (or one cycle with --once). State survives restarts."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        settings = settings_from_flags(FLAG_ENV, dict(
            wallet_name=wallet_name, wallet_hotkey=wallet_hotkey, network=network, netuid=netuid,
            strategy=strategy, api_url=api_url,
        ))  # fmt: skip
    except Exception as exc:  # pydantic names the bad variable
        typer.echo(f"error: invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings)
    stop = threading.Event()
    install_stop_handlers(stop, what="the miner after the current step (its state is on disk)")
    try:
        miner_loop = build_miner(settings, stop, axon_port=axon_port, once=once)
    except MinerSetupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        miner_loop.run(once=once)
    finally:
        miner_loop.client.close()
        miner_loop.store.release()
    log.info("miner stopped")


@app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON on stdout.")] = False,
) -> None:
    """Show the miner's state: the pending submission (without its salt), followed and past submissions."""
    from quasar.miner.state import StateStore

    settings = get_settings()
    state = StateStore(state_dir(settings)).load()
    data = state.model_dump(mode="json", exclude={"bench_cache"})
    if data.get("pending"):
        data["pending"].pop("salt_hex", None)  # secret until revealed
    data["bench_results"] = len(state.bench_cache)
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    pending = state.pending
    if pending is None:
        typer.echo("pending: none")
    else:
        typer.echo(
            f"pending: {pending.phase} {pending.payload.commit_sha[:12]} submission={pending.submission_id} "
            f"reveal_block={pending.reveal_block} deadline={pending.reveal_deadline_block}"
        )
    typer.echo(f"following: {state.following or 'none'}")
    for item in state.history[-10:]:
        score = "" if item.score is None else f" speed-up {item.score:.3f}"
        typer.echo(f"  #{item.submission_id} {item.commit_sha[:12]} {item.status}{score}")


def main() -> None:
    app(prog_name="python -m neurons.miner")
