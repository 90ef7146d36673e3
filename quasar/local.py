"""`quasar local up`: the subnet on one machine, on the embedded profile (what `make demo` runs).

It prepares the dev chain and the dev hotkeys (owner at uid 0, which is also the burn uid, a miner
and a validator), migrates the database, starts the Validator API as a child process, waits until
it is healthy and shows the state of the subnet. Every process it starts is stopped when it exits,
whether by Ctrl-C, an error or the end of `--once`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from quasar.config import Settings, get_settings

app = typer.Typer(no_args_is_help=True)
console = Console(stderr=True)

DEV_ROLES = {"owner": "quasar_owner", "miner": "quasar_miner", "validator": "quasar_validator"}


@dataclass
class DevIdentity:
    role: str
    wallet_name: str
    hotkey: str
    uid: int


def prepare_chain_and_wallets(settings: Settings) -> list[DevIdentity]:
    """Dev hotkeys for each role, registered on the dev chain (idempotent)."""
    from quasar.chain.devchain import DevChain
    from quasar.wallets import load_or_create_dev_wallet

    assert settings.dev_chain_path is not None and settings.wallet_path is not None
    chain = DevChain(settings.dev_chain_path, netuid=settings.netuid, block_time_seconds=settings.block_time_seconds or 1)
    chain.init()
    identities = []
    for role, wallet_name in DEV_ROLES.items():  # owner first, so it takes uid 0 (the burn uid)
        wallet = load_or_create_dev_wallet(wallet_name, settings.wallet_hotkey, settings.wallet_path)
        address = wallet.hotkey.ss58_address
        uid = chain.register(address, role, stake=10_000.0 if role != "miner" else 0.0)  # type: ignore[arg-type]
        identities.append(DevIdentity(role, wallet_name, address, uid))
    return identities


@contextmanager
def managed(cmd: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start a child in its own process group and always stop the whole group afterwards."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the API exited with code {proc.returncode}; its log ends with:\n{tail}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the API did not become ready within {timeout:.0f}s; see {log_path}")


def show_state(url: str, identities: list[DevIdentity]) -> None:
    from quasar.client import ValidatorApiClient

    client = ValidatorApiClient(url)
    info = client.info()
    health = client.health()
    table = Table("role", "uid", "hotkey", title="dev chain")
    for ident in identities:
        table.add_row(ident.role, str(ident.uid), ident.hotkey)
    console.print(table)
    console.print(
        f"API [bold]{url}[/] · hotkey {info.api_hotkey} · netuid {info.netuid} · "
        f"block {health.block} · status {health.status}"
    )
    current = client.current_round()
    if current is not None:
        console.print(f"round {current.id}: blocks {current.start_block}–{current.end_block} ({current.status})")
    weights = client.weights()
    console.print(f"weights: uids {weights.uids} → {weights.weights}")


@app.command("up")
def up(
    port: Annotated[int | None, typer.Option(help="API port (default PORT).")] = None,
    once: Annotated[bool, typer.Option(help="Stop after the subnet is up and checked.")] = False,
) -> None:
    """Bring up the local subnet (dev chain + Validator API) and keep it running until Ctrl-C."""
    # SIGTERM (docker stop, kill) must also stop the children: turn it into a normal exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    settings = get_settings()
    if not settings.is_embedded:
        console.print("[red]quasar local up runs the embedded profile only (SUBTENSOR_NETWORK=embedded).[/]")
        raise typer.Exit(2)
    port = port or settings.port
    url = f"http://127.0.0.1:{port}"
    home = settings.quasar_home
    env = {**os.environ, "VALIDATOR_API_URL": url}

    with console.status("preparing dev chain and hotkeys"):
        identities = prepare_chain_and_wallets(settings)
    with console.status("migrating the database"):
        subprocess.run([sys.executable, "-m", "quasar.cli", "db", "upgrade"], env=env, check=True)

    api_log = home / "logs" / "api.log"
    api_cmd = [sys.executable, "-m", "quasar.cli", "api", "--host", "127.0.0.1", "--port", str(port)]
    with managed(api_cmd, env, api_log) as api:
        with console.status(f"starting the Validator API on {url}"):
            wait_healthy(url, api, api_log)
        show_state(url, identities)
        if once:
            console.print("[green]local subnet is up and answering; stopping (--once).[/]")
            return
        console.print(f"running; logs in {home / 'logs'}. Ctrl-C stops everything.")
        try:
            while api.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping…")
            return
        raise typer.Exit(api.returncode or 1)
