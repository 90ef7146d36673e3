"""``quasar validator`` (the same as ``python -m neurons.validator``): run the validator neuron.

Takes the original subnet's bittensor-style flags (``--wallet.name``, ``--wallet.hotkey``,
``--subtensor.network``, ``--netuid``, ``--axon.port``); each overrides its setting from the
environment/.env (WALLET_VALIDATOR_NAME, WALLET_HOTKEY, SUBTENSOR_NETWORK, NETUID). Everything else
comes from settings (quasar/config.py): VALIDATOR_API_URL, DEVICE (``auto``: one worker per visible
GPU), ENABLE_LOGIT_VERIFICATION and REFERENCE_MODEL, JOB_LEASE_SECONDS, WEIGHTS_INTERVAL_BLOCKS, the
sandbox limits. ``--once`` and ``--max-jobs N`` end the run early (tests, scripts). Logs go to stderr.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from quasar.config import Settings
from quasar.neuron import install_stop_handlers, register_hint, settings_from_flags

log = logging.getLogger("quasar.validator")

app = typer.Typer(
    help="The validator neuron: evaluate submissions, verify miners' logits, set weights on chain.",
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class ValidatorSetupError(RuntimeError):
    """Something the validator needs is missing or wrong; the message says what to do."""


def state_dir(settings: Settings) -> Path:
    return settings.validator_state_path


def configure_logging(settings: Settings) -> None:
    # One set-up for every role (LOG_FORMAT=json gives one JSON object per line).
    from quasar.logging_setup import configure_logging as configure

    configure(settings, "validator")


def _load_wallet(settings: Settings) -> Any:
    from quasar.neuron import load_role_wallet
    from quasar.wallets import WalletNotFound

    try:
        return load_role_wallet(settings, settings.wallet_validator_name)
    except WalletNotFound as exc:
        raise ValidatorSetupError(str(exc)) from None


def _check_registration(settings: Settings, chain: Any, hotkey: str) -> None:
    """The hotkey must be a validator by the rule the API applies (`quasar.chain.roles`), else the
    validator does not start; on the embedded chain an unregistered dev hotkey registers itself."""
    from quasar.chain.roles import not_validator_reason

    neuron = chain.metagraph().get(hotkey)
    if neuron is None and settings.is_embedded:
        chain.register(hotkey, "validator", stake=10_000.0)
        log.info("registered the dev hotkey %s as a validator on the dev chain", hotkey)
        return
    reason = not_validator_reason(hotkey, neuron, settings.min_validator_stake, settings.netuid)
    if reason is None:
        return
    where = f"{reason} ({settings.subtensor_network})"
    if neuron is None:
        raise ValidatorSetupError(
            f"{where}; register it, then stake to it: {register_hint(settings, settings.wallet_validator_name)}"
        )
    fix = (
        f"quasar chain register --hotkey {hotkey} --role validator"
        if settings.is_embedded
        else "stake to it until the subnet grants it a validator permit"
    )
    raise ValidatorSetupError(f"{where}, so the API would refuse its every call; {fix}")


def inference_url_resolver(settings: Settings, chain: Any) -> Any:
    """Where a job's miner serves inference: the reveal on the dev chain, its axon on a real chain."""

    def resolve(job: Any) -> str | None:
        if settings.is_embedded and job.inference_url:
            return str(job.inference_url)
        try:
            neuron = chain.metagraph().get(job.miner_hotkey)
        except Exception as exc:  # the chain wrapper already logs outages
            log.warning("cannot read the metagraph for %s: %s", job.miner_hotkey, exc)
            neuron = None
        if neuron is not None and neuron.axon_url:
            return str(neuron.axon_url)
        return str(job.inference_url) if job.inference_url and settings.is_embedded else None

    return resolve


def verifier_function(settings: Settings, wallet: Any, device: Any) -> Any:
    """``verify(url, receiver)`` on ``device``, the reference model loaded there on first use.

    Each worker gets its own, on its own device: verification then runs on that GPU between two of
    its evaluations (the worker does one thing at a time), never beside a timing of another worker.
    """
    lock = threading.Lock()
    loaded: dict[str, Any] = {}

    def verify(url: str, receiver: str | None) -> Any:
        from quasar.verification.client import verify_server
        from quasar.verification.verifier import Verifier

        with lock:
            if "verifier" not in loaded:
                log.info("[%s] loading the reference model %s for logit verification", device, settings.reference_model)
                loaded["verifier"] = Verifier.from_settings(settings, device=str(device))
            return verify_server(
                url, loaded["verifier"], dev_mode=settings.dev_mode, timeout=settings.verify_timeout_seconds,
                wallet=None if settings.is_embedded else wallet, receiver=receiver,
            )  # fmt: skip

    verify.device = device  # type: ignore[attr-defined]  # where it runs, for the logs and tests
    return verify


def build_validator(settings: Settings, stop: threading.Event, *, device: str | None = None) -> Any:
    """Everything the loop needs, from the settings; raises ValidatorSetupError with what to fix."""
    from quasar.chain import ChainUnavailable, get_chain
    from quasar.chain.resilient import CachedChain
    from quasar.client import ValidatorApiClient
    from quasar.validator.loop import Validator
    from quasar.validator.posting import ResultSpool
    from quasar.validator.weights import WeightSetter
    from quasar.validator.worker import JobRunner, devices_from_setting

    wallet = _load_wallet(settings)
    hotkey = wallet.hotkey.ss58_address
    raw_chain = get_chain(settings)
    try:
        _check_registration(settings, raw_chain, hotkey)
    except ChainUnavailable as exc:
        raise ValidatorSetupError(f"cannot reach the chain: {exc}") from None
    chain = CachedChain(
        raw_chain,
        metagraph_ttl_seconds=settings.metagraph_ttl_seconds,
        retry_seconds=settings.chain_retry_seconds,
    )
    try:
        devices = devices_from_setting(device or settings.device)
    except ValueError as exc:
        raise ValidatorSetupError(str(exc)) from None
    verifying = settings.enable_logit_verification
    resolve = inference_url_resolver(settings, chain)
    runners = [
        JobRunner(
            settings, d, verify=verifier_function(settings, wallet, d) if verifying else None, inference_url_of=resolve
        )
        for d in devices
    ]
    api_url = settings.validator_api_url

    def client_factory() -> ValidatorApiClient:
        return ValidatorApiClient(api_url, wallet)

    assert settings.weights_interval_blocks is not None
    setter = WeightSetter(
        client_factory(), chain, wallet, settings.weights_interval_blocks,
        burn_uid=settings.burn_uid, state_file=state_dir(settings) / "weights.json",
    )  # fmt: skip
    log.info(
        "validator %s on %s (netuid %d): API %s, devices %s, logit verification %s",
        hotkey, settings.subtensor_network, settings.netuid, api_url, ", ".join(map(str, devices)),
        "on (each worker on its own device)" if verifying else "off",
    )  # fmt: skip
    return Validator(
        client_factory=client_factory, runners=runners, weight_setter=setter,
        spool=ResultSpool(state_dir(settings) / "results"), stop=stop, poll_seconds=settings.validator_poll_seconds,
    )  # fmt: skip


FLAG_ENV = {
    "wallet_name": "WALLET_VALIDATOR_NAME", "wallet_hotkey": "WALLET_HOTKEY",
    "network": "SUBTENSOR_NETWORK", "netuid": "NETUID", "api_url": "VALIDATOR_API_URL",
}  # fmt: skip


@app.callback()
def validator(
    ctx: typer.Context,
    wallet_name: Annotated[
        str | None, typer.Option("--wallet.name", help="Wallet name (WALLET_VALIDATOR_NAME).")
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
            "--axon.port", help="Accepted for compatibility with the original; the validator serves nothing."
        ),
    ] = None,
    api_url: Annotated[
        str | None, typer.Option("--api-url", help="Validator API URL (VALIDATOR_API_URL).")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu | cuda | cuda:N | auto: one worker per GPU (DEVICE).")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Evaluate what is queued now, set weights once, and exit.")
    ] = False,
    max_jobs: Annotated[
        int | None, typer.Option("--max-jobs", min=1, help="Exit after evaluating this many jobs.")
    ] = None,
) -> None:
    """Run the validator until SIGTERM/Ctrl-C (or --once / --max-jobs N)."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        settings = settings_from_flags(FLAG_ENV, dict(
            wallet_name=wallet_name, wallet_hotkey=wallet_hotkey, network=network, netuid=netuid,
            api_url=api_url,
        ))  # fmt: skip
    except Exception as exc:  # pydantic names the bad variable
        typer.echo(f"error: invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings)
    try:
        from quasar.metrics import serve_validator_metrics

        serve_validator_metrics(settings.validator_metrics_port)
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if axon_port is not None:
        log.debug("--axon.port %s ignored: the validator serves no axon", axon_port)
    stop = threading.Event()
    install_stop_handlers(stop, what="the validator (leases lapse, nothing is lost)")
    try:
        neuron = build_validator(settings, stop, device=device)
    except ValidatorSetupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    neuron.run(once=once, max_jobs=max_jobs)
    log.info(
        "validator stopped: %d result(s) posted, %d refused", neuron.progress.posted, neuron.progress.refused
    )


def main() -> None:
    app(prog_name="python -m neurons.validator")
