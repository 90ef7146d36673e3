"""`quasar chain …`: manage the local dev chain (the embedded profile's SQLite chain file).

Commands: `init`, `register`, `advance`, `status`, `serve`. They refuse to run against a real
chain (exit 2): registrations, stake and served addresses there belong to `btcli`. Every command
takes `--json` for scripts (JSON alone on stdout); messages go to stderr. Runs standalone as
`python -m quasar.chain.cli`, and is mounted in `quasar` as `quasar chain`.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from quasar.chain.base import ChainError
from quasar.chain.devchain import ROLES, DevChain
from quasar.config import EMBEDDED_NETWORK, Settings, get_settings

app = typer.Typer(
    name="chain",
    help="The local dev chain (SUBTENSOR_NETWORK=embedded): init, register, advance, status, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages stay one line, for grep and logs

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON alone on stdout.")]


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _settings() -> Settings:
    try:
        return get_settings()
    except Exception as exc:  # pydantic's ValidationError names the bad variable
        _fail(f"invalid settings: {exc}", 2)


def _dev_chain() -> DevChain:
    settings = _settings()
    if not settings.is_embedded:
        _fail(
            f"SUBTENSOR_NETWORK is {settings.subtensor_network!r}: quasar chain … manages the local dev "
            f"chain only (SUBTENSOR_NETWORK={EMBEDDED_NETWORK}); on a real chain use btcli",
            2,
        )
    assert settings.dev_chain_path is not None and settings.block_time_seconds is not None
    return DevChain(settings.dev_chain_path, netuid=settings.netuid, block_time_seconds=settings.block_time_seconds)


def _check_ss58(hotkey: str) -> str:
    from bittensor.sp_core import ss58_decode

    try:
        ss58_decode(hotkey)
    except Exception:
        _fail(f"{hotkey!r} is not an SS58 address; `quasar wallet create` makes a dev hotkey", 2)
    return hotkey


@app.command("init")
def init_command(json_out: JsonOption = False) -> None:
    """Create the dev chain file if it does not exist yet, and show where it is."""
    chain = _dev_chain()
    try:
        block = chain.init()
    except ChainError as exc:
        _fail(str(exc))
    if json_out:
        _print_json({"path": str(chain.path), "netuid": chain.netuid, "block": block})
    else:
        err.print(f"dev chain at {chain.path} (netuid {chain.netuid}), block {block}", highlight=False)


@app.command("register")
def register_command(
    hotkey: Annotated[str, typer.Option(help="SS58 address of the hotkey.")],
    role: Annotated[str, typer.Option(help="miner, validator (gets a validator permit) or owner.")],
    stake: Annotated[float, typer.Option(help="Stake to record for the hotkey.")] = 0.0,
    coldkey: Annotated[
        str | None, typer.Option(help="SS58 address of the owning coldkey (kept when left out).")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Register a hotkey (or change its role, stake and coldkey); its uid never changes."""
    if role not in ROLES:
        _fail(f"--role must be one of {', '.join(ROLES)}, not {role!r}", 2)
    if stake < 0:
        _fail("--stake cannot be negative", 2)
    chain = _dev_chain()
    _check_ss58(hotkey)
    if coldkey is not None:
        _check_ss58(coldkey)
    try:
        uid = chain.register(hotkey, role, stake=stake, coldkey=coldkey)  # type: ignore[arg-type]
    except ChainError as exc:
        _fail(str(exc))
    if json_out:
        _print_json({"uid": uid, "hotkey": hotkey, "role": role, "stake": stake})
    else:
        err.print(f"registered {hotkey} as {role} (uid {uid}, stake {stake:g})", highlight=False)


@app.command("advance")
def advance_command(
    blocks: Annotated[int, typer.Argument(help="How many blocks to move ahead.", min=0)],
    json_out: JsonOption = False,
) -> None:
    """Move the chain ahead of the wall clock by BLOCKS (e.g. to reach a reveal block now)."""
    chain = _dev_chain()
    try:
        block = chain.advance(blocks)
    except ChainError as exc:
        _fail(str(exc))
    if json_out:
        _print_json({"block": block})
    else:
        err.print(f"block {block}", highlight=False)


@app.command("serve")
def serve_command(
    hotkey: Annotated[str, typer.Option(help="SS58 address of a registered hotkey.")],
    ip: Annotated[str, typer.Option(help="IP address where its server listens.")],
    port: Annotated[int, typer.Option(help="Port where its server listens.", min=1, max=65535)],
    json_out: JsonOption = False,
) -> None:
    """Publish a neuron's address (the dev stand-in for ServeAxon)."""
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        _fail(f"--ip {ip!r} is not an IP address", 2)
    chain = _dev_chain()
    _check_ss58(hotkey)
    try:
        chain.serve(hotkey, ip, port)
    except ValueError as exc:
        _fail(f"{exc}; register it first with `quasar chain register`")
    except ChainError as exc:
        _fail(str(exc))
    if json_out:
        _print_json({"hotkey": hotkey, "ip": ip, "port": port})
    else:
        err.print(f"{hotkey} serves at {ip}:{port}", highlight=False)


@app.command("status")
def status_command(
    weights: Annotated[int, typer.Option(help="How many recent weight records to show.")] = 5,
    json_out: JsonOption = False,
) -> None:
    """Block, registered neurons and the most recent weights."""
    chain = _dev_chain()
    try:
        graph = chain.metagraph()
        roles = chain.roles()
        recent = chain.weights()[-weights:] if weights > 0 else []
    except ChainError as exc:
        _fail(str(exc))
    if json_out:
        _print_json(
            {
                "path": str(chain.path),
                "netuid": graph.netuid,
                "block": graph.block,
                "owner_hotkey": graph.owner_hotkey,
                "neurons": [
                    {
                        "uid": n.uid,
                        "hotkey": n.hotkey,
                        "role": roles.get(n.hotkey, "?"),
                        "stake": n.stake,
                        "validator_permit": n.validator_permit,
                        "axon": n.axon_url,
                    }
                    for n in graph.neurons
                ],
                "weights": [
                    {"block": w.block, "hotkey": w.hotkey, "uids": w.uids, "weights": w.weights} for w in recent
                ],
            }
        )
        return
    out.print(f"dev chain {chain.path} · netuid {graph.netuid} · block [bold]{graph.block}[/]", highlight=False)
    table = Table("uid", "role", title="neurons")
    # fold rather than truncate: people copy hotkeys and addresses out of this table
    table.add_column("hotkey", overflow="fold")
    table.add_column("stake")
    table.add_column("permit")
    table.add_column("axon", overflow="fold")
    for n in graph.neurons:
        table.add_row(
            str(n.uid), roles.get(n.hotkey, "?"), n.hotkey, f"{n.stake:g}", "yes" if n.validator_permit else "", n.axon_url or ""
        )
    out.print(table if graph.neurons else "no neurons registered yet (quasar chain register …)")
    if recent:
        wt = Table("block", title="recent weights")
        wt.add_column("validator", overflow="fold")
        wt.add_column("uids → weights", overflow="fold")
        for w in recent:
            pairs = ", ".join(f"{u}: {x:.3f}" for u, x in zip(w.uids, w.weights, strict=False))
            wt.add_row(str(w.block), w.hotkey, pairs)
        out.print(wt)


if __name__ == "__main__":
    app()
