"""The `quasar` command: one entry point per role plus the owner's and developer's tools.

Each subcommand is thin: it reads settings from `quasar.config`, then calls the module that does
the work. `--json` output is JSON alone on stdout; logs and progress go to stderr.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from quasar.evaluation.cli import evaluate_command
from quasar.inference.cli import serve as inference_serve

if TYPE_CHECKING:
    from rich.table import Table

    from quasar.config import Settings


# --- sub-apps imported on first use ---------------------------------------------------------------
# Importing every role's CLI module at start cost about 1.5 s (the chain client, the settings,
# httpx) on every `quasar ...`, `--help` and `env` included. These groups are listed in `quasar
# --help` by name and help alone; a group's module is imported when it is run (or its own --help).
class LazyGroup(NamedTuple):
    module: str
    attribute: str
    help: str


LAZY_GROUPS: dict[str, LazyGroup] = {
    "chain": LazyGroup("quasar.chain.cli", "app", "The local dev chain (embedded profile)."),
    "local": LazyGroup("quasar.local.cli", "app", "The whole subnet on this machine (embedded profile)."),
    "verify": LazyGroup(
        "quasar.verification.cli",
        "app",
        "Logit verification of a miner's inference server, and its calibration.",
    ),
    "model": LazyGroup("quasar.models.cli", "app", "Models the project builds itself."),
    "miner": LazyGroup("quasar.miner.cli", "app", "The miner neuron (the same as python -m neurons.miner)."),
    "validator": LazyGroup(
        "quasar.validator.cli", "app", "The validator neuron (the same as python -m neurons.validator)."
    ),
}


def load_group(name: str) -> Any:
    """The Click group of LAZY_GROUPS[name], built as `app.add_typer(sub_app, name=..., help=...)` would."""
    entry = LAZY_GROUPS[name]
    holder = typer.Typer()
    holder.add_typer(
        getattr(importlib.import_module(entry.module), entry.attribute), name=name, help=entry.help
    )
    return typer.main.get_group(holder).commands[name]


class QuasarGroup(TyperGroup):
    """The root group: LAZY_GROUPS stand as placeholders until one is looked up to be run.

    Only the help page (`format_help`) reads the placeholders, for their name and help; any other
    look-up (running a group, `quasar chain --help`, the test runner) imports the real one first.
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._placeholders = set(LAZY_GROUPS)
        self._formatting_help = False
        for name, entry in LAZY_GROUPS.items():
            self.commands[name] = TyperGroup(name=name, help=entry.help)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self._placeholders and not self._formatting_help:
            self.commands[cmd_name] = load_group(cmd_name)
            self._placeholders.discard(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._formatting_help = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._formatting_help = False


app = typer.Typer(
    name="quasar",
    help="QUASAR subnet: Validator API, dev chain, kernel benchmark and owner tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=QuasarGroup,
)
db_app = typer.Typer(help="Database migrations of the Validator API.", no_args_is_help=True)
wallet_app = typer.Typer(help="Development hotkeys (offline, no prompts).", no_args_is_help=True)
round_app = typer.Typer(help="Rounds (owner): create, finalize, list.", no_args_is_help=True)
kernel_app = typer.Typer(help="The kernel repository miners start from.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(wallet_app, name="wallet")
app.add_typer(round_app, name="round")
app.add_typer(kernel_app, name="kernel")
# chain, local, verify, model, miner, validator follow (LAZY_GROUPS, in that order).
app.command("inference")(inference_serve)

err = Console(stderr=True)


def _fail(message: str, code: int = 1) -> NoReturn:
    # soft_wrap: one line however narrow the terminal, so it can be grepped and copied whole.
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _settings() -> Settings:
    from quasar.config import InvalidSettings, get_settings

    try:
        return get_settings()
    except InvalidSettings as exc:  # one line: the variable, what is wrong, where from, a right value
        _fail(f"invalid settings: {exc}", 2)


# --- the Validator API -----------------------------------------------------------------------------
@app.command("api")
def api_command(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default PORT).")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development).")] = False,
) -> None:
    """Serve the Validator API (the same app as `uvicorn validator_api.app:app`)."""
    import uvicorn

    settings = _settings()
    json_logs = settings.log_format == "json"
    if json_logs:
        from quasar.logging_setup import configure_logging

        configure_logging(settings, "api")
    uvicorn.run(
        "validator_api.app:app",
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        reload=reload,
        proxy_headers=True,
        # JSON logs: uvicorn's own lines go through our JSON handler, and its access log (a
        # duplicate of the API's own, which carries the request id) is left out.
        **({"log_config": None, "access_log": False} if json_logs else {}),
    )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply the database migrations (safe to run again; it only moves forward)."""
    from sqlalchemy.exc import SQLAlchemyError

    from quasar.database_url import DATABASE_URL_EXAMPLE
    from validator_api.migrate import upgrade

    settings = _settings()
    assert settings.database_url is not None
    where = f"DATABASE_URL={_redact(settings.database_url)}"
    try:
        if settings.database_url.startswith("sqlite:///"):
            Path(settings.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        upgrade(settings.database_url, revision)
    except (SQLAlchemyError, OSError) as exc:  # unreachable server, refused login, unwritable directory
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        _fail(
            f"cannot migrate the database at {where}: {reason}; e.g. DATABASE_URL={DATABASE_URL_EXAMPLE}", 2
        )
    err.print(f"database at {_redact(settings.database_url)} is at revision {revision}")


def _redact(url: str) -> str:
    """A database URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# --- wallets ---------------------------------------------------------------------------------------
@wallet_app.command("create")
def wallet_create(
    name: Annotated[str, typer.Option(help="Wallet (coldkey) name.")] = "quasar_miner",
    hotkey: Annotated[str, typer.Option(help="Hotkey name.")] = "default",
    path: Annotated[Path | None, typer.Option(help="Wallet directory (default WALLET_PATH).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing key.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Create an unencrypted development hotkey offline; prints its SS58 address."""
    from quasar.wallets import create_dev_wallet

    settings = _settings()
    where = path or settings.wallet_path
    assert where is not None
    wallet = create_dev_wallet(name, hotkey, where, overwrite=overwrite)
    address = wallet.hotkey.ss58_address
    if as_json:
        _print_json({"name": name, "hotkey": hotkey, "path": str(where), "ss58_address": address})
    else:
        err.print(f"wallet [bold]{name}/{hotkey}[/] under {where}")
        typer.echo(address)


# --- rounds (owner) ----------------------------------------------------------------------------------
def _owner_client(settings: Settings, wallet_name: str | None, hotkey: str | None, api_url: str | None):
    from quasar.client import ValidatorApiClient
    from quasar.wallets import WalletNotFound, load_wallet

    assert settings.wallet_path is not None
    try:
        wallet = load_wallet(
            wallet_name or settings.owner_wallet_name, hotkey or settings.wallet_hotkey, settings.wallet_path
        )
    except WalletNotFound as exc:
        _fail(str(exc), 2)
    return ValidatorApiClient(api_url or settings.validator_api_url, wallet)


WalletNameOpt = Annotated[str | None, typer.Option("--wallet.name", help="Owner wallet (OWNER_WALLET_NAME).")]
WalletHotkeyOpt = Annotated[str | None, typer.Option("--wallet.hotkey", help="Hotkey (WALLET_HOTKEY).")]
ApiUrlOpt = Annotated[str | None, typer.Option("--api-url", help="Validator API (VALIDATOR_API_URL).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON only.")]


def _round_table(rounds: list[Any]) -> Table:
    from rich.table import Table

    table = Table("id", "status", "start", "end", "shape", "baseline ms", "winner")
    for r in rounds:
        shape = r.target_shape
        table.add_row(
            str(r.id),
            r.status,
            str(r.start_block),
            str(r.end_block),
            f"B{shape.batch} T{shape.seq_len} H{shape.heads} K{shape.head_dim_k} V{shape.head_dim_v} {shape.dtype}",
            "-" if r.baseline_ms is None else f"{r.baseline_ms:.3f}",
            r.winner_hotkey or "-",
        )
    return table


def _call_api(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from quasar.client import ApiError

    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        _fail(f"{exc.code}: {exc.detail}")


@round_app.command("create")
def round_create(
    duration_blocks: Annotated[
        int | None, typer.Option(help="Length in blocks (default ROUND_BLOCKS).")
    ] = None,
    seq_len: Annotated[
        int | None, typer.Option(help="T of the target shape (default TARGET_SEQUENCE_LENGTH).")
    ] = None,
    wallet_name: WalletNameOpt = None,
    wallet_hotkey: WalletHotkeyOpt = None,
    api_url: ApiUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Open a round now (owner only)."""
    from quasar.schemas import TargetShape

    settings = _settings()
    client = _owner_client(settings, wallet_name, wallet_hotkey, api_url)
    shape = TargetShape(seq_len=seq_len or settings.target_sequence_length)
    created = _call_api(client.create_round, duration_blocks or settings.round_blocks, shape)
    _print_json(created.model_dump(mode="json")) if as_json else Console().print(_round_table([created]))


@round_app.command("finalize")
def round_finalize(
    round_id: Annotated[int, typer.Argument(help="Round to finalize.")],
    wallet_name: WalletNameOpt = None,
    wallet_hotkey: WalletHotkeyOpt = None,
    api_url: ApiUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Finalize a round now and fix its weights (owner only)."""
    settings = _settings()
    client = _owner_client(settings, wallet_name, wallet_hotkey, api_url)
    done = _call_api(client.finalize_round, round_id)
    _print_json(done.model_dump(mode="json")) if as_json else Console().print(_round_table([done]))


@round_app.command("list")
def round_list(
    limit: Annotated[int, typer.Option(help="Rounds per page.")] = 20,
    offset: Annotated[int, typer.Option(help="Rounds to skip (newest first).")] = 0,
    api_url: ApiUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List rounds, newest first (public)."""
    from quasar.client import ValidatorApiClient

    settings = _settings()
    client = ValidatorApiClient(api_url or settings.validator_api_url)
    page = _call_api(client.list_rounds, limit=limit, offset=offset)
    if as_json:
        _print_json(page.model_dump(mode="json"))
    else:
        Console().print(_round_table(page.items))
        err.print(f"{len(page.items)} of {page.total} rounds")


# --- kernel and benchmark ----------------------------------------------------------------------------
@kernel_app.command("init")
def kernel_init(
    path: Annotated[Path, typer.Argument(help="Directory for the new repository.")],
    force: Annotated[bool, typer.Option(help="Write into a non-empty directory.")] = False,
) -> None:
    """Create a git repository with the layout a submission must have (fla/ops/quasar)."""
    from quasar.kernels.template import init_kernel_repo

    try:
        sha = init_kernel_repo(path, force=force)
    except (FileExistsError, ValueError, RuntimeError) as exc:
        _fail(str(exc), 2)
    err.print(f"kernel repository at {path} (commit {sha})")
    typer.echo(sha)


@app.command(
    "bench",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
)
def bench_command(ctx: typer.Context) -> None:
    """Correctness suite, then timing, of a chunk_quasar (see `quasar bench --help`)."""
    from quasar.bench.__main__ import main as bench_main

    raise typer.Exit(bench_main(list(ctx.args)))


app.command("evaluate")(evaluate_command)


@app.command("env")
def env_command(
    file: Annotated[Path | None, typer.Argument(help="The file to read (default .env).")] = None,
) -> None:
    """Print `.env` as `export KEY='value'` lines for a shell to eval (the START_*.sh scripts do)."""
    from quasar.envfile import main as env_main

    raise typer.Exit(env_main([] if file is None else [str(file)]))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except Exception as exc:
        # A command that read the settings without _settings(); quasar.config is imported by then.
        config = sys.modules.get("quasar.config")
        if config is None or not isinstance(exc, config.InvalidSettings):
            raise
        err.print(f"[bold red]error:[/] invalid settings: {escape(str(exc))}", soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
