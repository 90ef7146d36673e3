"""`quasar verify --url URL` and `quasar verify calibrate` (mounted by `quasar.cli`).

`--json` prints JSON alone on stdout; progress and tables for people go to stderr/stdout as usual.
Exit codes of `verify`: 0 pass, 1 fail, 2 error (retry later, or fix the validator's side).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="Logit verification of a miner's inference server, and its calibration.",
    no_args_is_help=False,
    invoke_without_command=True,
)


def _echo_err(message: str) -> None:
    typer.echo(message, err=True)


def _settings() -> Any:
    from quasar.config import get_settings

    try:
        return get_settings()
    except Exception as exc:  # pydantic names the bad variable
        _echo_err(f"error: invalid settings: {exc}")
        raise typer.Exit(2) from None


@app.callback()
def verify(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option("--url", help="Base URL of the miner's inference server.")
    ] = None,
    receiver: Annotated[
        str | None, typer.Option(help="The miner's hotkey (signed requests are addressed to it; real chain).")
    ] = None,
    wallet_name: Annotated[
        str | None, typer.Option("--wallet.name", help="Validator wallet that signs (WALLET_VALIDATOR_NAME).")
    ] = None,
    wallet_hotkey: Annotated[
        str | None, typer.Option("--wallet.hotkey", help="Hotkey (WALLET_HOTKEY).")
    ] = None,
    seed: Annotated[str | None, typer.Option(help="Challenge seed (hex); random by default.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Check a miner's inference server against REFERENCE_MODEL (exit 0 pass, 1 fail, 2 error)."""
    if ctx.invoked_subcommand is not None:
        return
    if url is None:
        _echo_err(ctx.get_help())
        _echo_err("\nerror: give --url URL (or a subcommand: calibrate)")
        raise typer.Exit(2)
    from quasar.inference.model import ModelLoadError
    from quasar.verification.client import verify_server
    from quasar.verification.verifier import Verifier

    settings = _settings()
    wallet = None
    if not settings.is_embedded:
        from quasar.wallets import WalletNotFound, load_wallet

        try:
            wallet = load_wallet(
                wallet_name or settings.wallet_validator_name,
                wallet_hotkey or settings.wallet_hotkey,
                settings.wallet_path,
            )
        except WalletNotFound as exc:
            _echo_err(f"error: {exc}")
            raise typer.Exit(2) from None
        if receiver is None:
            receiver = _advertised_hotkey(url, settings)
    try:
        verifier = Verifier.from_settings(settings)
    except ModelLoadError as exc:
        _echo_err(f"error: {exc}")
        raise typer.Exit(2) from None
    result, info = verify_server(
        url,
        verifier,
        dev_mode=settings.dev_mode,
        timeout=settings.verify_timeout_seconds,
        wallet=wallet,
        receiver=receiver,
        seed=seed,
    )
    report = {**result.as_dict(), "url": url, "model_info": info}
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        typer.echo(f"{result.verdict.upper()}  {result.reason}: {report['detail']}")
        for key, value in sorted(result.metrics.items()):
            typer.echo(f"  {key:24} {value:.6g}")
    raise typer.Exit({"pass": 0, "fail": 1}.get(result.verdict, 2))


def _advertised_hotkey(url: str, settings: Any) -> str | None:
    """For a manual check only: the hotkey the server names in /model_info (validators take it from
    the submission instead)."""
    import httpx

    try:
        hotkey = (
            httpx.get(url.rstrip("/") + "/model_info", timeout=settings.verify_timeout_seconds)
            .json()
            .get("hotkey")
        )
    except (httpx.HTTPError, ValueError):
        return None
    if hotkey:
        _echo_err(
            f"note: addressing the request to the hotkey the server advertises ({hotkey}); pass --receiver to pin it"
        )
    return hotkey


@app.command("calibrate")
def calibrate(
    challenges: Annotated[int, typer.Option(help="Challenges per scenario.")] = 8,
    model: Annotated[str | None, typer.Option(help="Reference model (default REFERENCE_MODEL).")] = None,
    device: Annotated[str | None, typer.Option(help="Device (default DEVICE).")] = None,
    dtypes: Annotated[
        str, typer.Option(help="Declared dtypes to calibrate, comma-separated.")
    ] = "float32,bfloat16",
    write: Annotated[
        Path | None, typer.Option(help="Write the suggested thresholds to this JSON file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Measure honest noise against dishonest distance and print the table thresholds come from."""
    from quasar.inference.model import ModelLoadError
    from quasar.verification.calibrate import (
        default_scenarios,
        format_table,
        judge,
        misclassified,
        run_calibration,
        suggest_thresholds,
    )
    from quasar.verification.verifier import Verifier

    settings = _settings()
    try:
        verifier = Verifier.from_settings(settings, reference=model, device=device)
    except ModelLoadError as exc:
        _echo_err(f"error: {exc}")
        raise typer.Exit(2) from None
    reference = verifier.reference
    scenarios = default_scenarios(
        reference, declared_dtypes=tuple(d.strip() for d in dtypes.split(",") if d.strip())
    )
    _echo_err(
        f"calibrating {reference.name} on {reference.device}: {len(scenarios)} scenarios x {challenges} challenges"
    )
    outcomes = run_calibration(
        reference,
        scenarios,
        challenges=challenges,
        spec=verifier.spec,
        thresholds=verifier.thresholds,
        progress=_echo_err,
    )
    current_misses = misclassified(outcomes)
    suggested = suggest_thresholds(outcomes)
    judge(outcomes, Verifier(reference, {**verifier.thresholds, **suggested}, spec=verifier.spec))
    suggested_misses = misclassified(outcomes)
    report = {
        "reference_model": reference.name,
        "device": str(reference.device),
        "challenges": challenges,
        "spec": vars(verifier.spec),
        "scenarios": [o.as_dict() for o in outcomes],
        "current_thresholds": {d: t.as_dict() for d, t in verifier.thresholds.items()},
        "misclassified_with_current": current_misses,
        "thresholds": {d: t.as_dict() for d, t in suggested.items()},
        "misclassified_with_suggested": suggested_misses,
    }
    if write is not None:
        write.write_text(json.dumps({"thresholds": report["thresholds"]}, indent=2) + "\n")
        _echo_err(f"wrote suggested thresholds to {write}; set VERIFY_THRESHOLDS_FILE={write} to use them")
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
        return
    typer.echo("pass counts under the SUGGESTED thresholds:")
    typer.echo(format_table(outcomes))
    typer.echo("\nsuggested thresholds (margin over the worst honest value):")
    for dtype, limits in suggested.items():
        typer.echo(f"  {dtype:9} {limits.as_dict()}")
    typer.echo(f"\nmisclassified with the current thresholds: {current_misses or 'none'}")
    typer.echo(f"misclassified with the suggested thresholds: {suggested_misses or 'none'}")
