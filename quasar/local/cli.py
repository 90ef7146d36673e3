"""`quasar local up`: the command (what `make demo` runs); the round itself is `quasar.local.scenario`'s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from typing import Annotated

import typer

from quasar.config import get_settings
from quasar.local.hotkeys import prepare_chain_and_wallets
from quasar.local.processes import DemoError, port_is_free, wait_healthy
from quasar.local.report import console, show_state
from quasar.local.scenario import DEMO_ENV, Demo, keep_running, run_round

app = typer.Typer(no_args_is_help=True)


@app.command("up")
def up(
    port: Annotated[int | None, typer.Option(help="API port (default PORT).")] = None,
    once: Annotated[
        bool, typer.Option(help="Only bring up the dev chain and the API, check them and stop (no round).")
    ] = False,
    keep_running_: Annotated[
        bool, typer.Option("--keep-running", help="After the round, keep the subnet running for more rounds.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds the round may take before giving up.")] = 900.0,
) -> None:
    """Run the subnet locally: API, dev chain, two miners (one cheats), a validator; one full round."""
    # SIGTERM (docker stop, kill) must also stop the children: turn it into a normal exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for key, value in DEMO_ENV.items():
        os.environ.setdefault(key, value)
    from quasar.config import reset_settings_cache

    reset_settings_cache()
    settings = get_settings()
    if not settings.is_embedded:
        console.print("[red]quasar local up runs the embedded profile only (SUBTENSOR_NETWORK=embedded).[/]")
        raise typer.Exit(2)
    port = port or settings.port
    if not port_is_free(port):
        console.print(f"[red]port {port} is in use[/]: stop what listens there, or pass --port N (make demo "
                      f"DEMO_ARGS='--port N').")  # fmt: skip
        raise typer.Exit(2)
    if not once:
        # The validator would claim nothing without its sandbox: say why now, not after a timeout.
        from quasar.evaluation.evaluate import EvaluationOptions
        from quasar.evaluation.sandbox import SandboxUnavailable

        try:
            with console.status("checking the evaluation sandbox"):
                mechanisms = EvaluationOptions.from_settings(settings).detect_sandbox()
        except SandboxUnavailable as exc:
            console.print(f"[red]the validator cannot run submissions here:[/] {exc}")
            raise typer.Exit(1) from None
        console.print(f"[green]✓[/] sandbox: {mechanisms.describe()}")
    url = f"http://127.0.0.1:{port}"
    home = settings.quasar_home
    env = {**os.environ, "VALIDATOR_API_URL": url, "PYTHONUNBUFFERED": "1"}

    started = time.monotonic()
    with console.status("preparing dev chain and hotkeys"):
        identities = prepare_chain_and_wallets(settings)
    with console.status("migrating the database"):
        subprocess.run([sys.executable, "-m", "quasar.cli", "db", "upgrade"], env=env, check=True,
                       capture_output=True)  # fmt: skip

    with ExitStack() as stack:
        demo = Demo(settings, url, {i.role: i for i in identities}, home / "logs", env, stack)
        api = demo.start(
            "api", [sys.executable, "-m", "quasar.cli", "api", "--host", "127.0.0.1", "--port", str(port)]
        )
        try:
            with console.status(f"starting the Validator API on {url}"):
                wait_healthy(url, api, demo.log_of("api"))
            show_state(url, identities)
            if once:
                console.print("[green]local subnet is up and answering; stopping (--once).[/]")
                return
            if settings.enable_logit_verification:
                with console.status("building the tiny model (the reference and the miners' model)"):
                    from quasar.models.tiny import ensure_default_tiny_model

                    ensure_default_tiny_model(settings, str(settings.model_name))
            round_id = run_round(demo, timeout=timeout)
            console.print(f"[bold green]The round completed in {time.monotonic() - started:.0f} s.[/] "
                          f"Logs: {demo.logs}")  # fmt: skip
            if keep_running_:
                keep_running(demo, round_id)
        except DemoError as exc:
            console.print(f"[bold red]the local round failed:[/] {exc}")
            console.print(f"logs of every process: {demo.logs}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.print("stopping every process…")
            raise typer.Exit(130) from None
