"""`quasar local up`: the whole subnet on one machine, on the embedded profile (what `make demo` runs).

It prepares the dev chain and the dev hotkeys (the owner at uid 0, which is also the burn uid, two
miners and a validator), builds the tiny model, and starts, each as a child process in its own
process group: the Validator API (SQLite), the two miners' inference servers, the honest miner
(`quasar miner --once`, the real miner neuron), and the validator (`quasar validator`). A second
miner cheats: its kernel returns zeros (it is scripted here, since the real miner refuses to submit a
kernel its own bench fails). Then it follows one round to its end, has the owner close it once every
submission is evaluated, waits for the validator to set the weights on the dev chain, and says what
happened. `--keep-running` then keeps everything up for more rounds; `--once` only brings up the
chain and the API and checks them.

Every process it starts is stopped when it exits, whether by Ctrl-C, SIGTERM, an error or the end.
Logs of the children are in QUASAR_HOME/logs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.table import Table

from quasar.config import Settings, get_settings
from quasar.demo_kernels import HONEST_CHANGE
from quasar.reasons import REASONS, describe

app = typer.Typer(no_args_is_help=True)
console = Console(stderr=True)

DEV_ROLES = {
    "owner": "quasar_owner",
    "miner": "quasar_miner",
    "cheater": "quasar_cheater",
    "validator": "quasar_validator",
}
CHAIN_ROLE = {"owner": "owner", "miner": "miner", "cheater": "miner", "validator": "validator"}
ROLE_WORDS = {
    "owner": "the subnet owner (uid 0 is also the burn uid)",
    "miner": "honest miner",
    "cheater": "cheating miner",
    "validator": "validator",
}
#: Settings of the children that make a local round short; each is used only if not set already.
DEMO_ENV = {
    "ROUND_BLOCKS": "900",
    "VALIDATOR_POLL_SECONDS": "1",
    "WEIGHTS_INTERVAL_BLOCKS": "60",
    "DEVICE": "cpu",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "LOG_LEVEL": "INFO",
}
ZEROS_KERNEL = '''"""A cheating QuasarAttention: skips the work and returns zeros of the right shape."""

import torch


def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    n = q.shape[0] if cu_seqlens is None else len(cu_seqlens) - 1
    final = torch.zeros(n, q.shape[2], k.shape[-1], v.shape[-1]) if output_final_state else None
    return torch.zeros_like(v), final
'''

T = TypeVar("T")


class DemoError(RuntimeError):
    """The local round could not complete; the message says what happened and where the logs are."""


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
    chain = DevChain(
        settings.dev_chain_path, netuid=settings.netuid, block_time_seconds=settings.block_time_seconds or 1
    )
    chain.init()
    identities = []
    for role, wallet_name in DEV_ROLES.items():  # owner first, so it takes uid 0 (the burn uid)
        wallet = load_or_create_dev_wallet(wallet_name, settings.wallet_hotkey, settings.wallet_path)
        address = wallet.hotkey.ss58_address
        chain_role = CHAIN_ROLE[role]
        uid = chain.register(address, chain_role, stake=0.0 if chain_role == "miner" else 10_000.0)  # type: ignore[arg-type]
        identities.append(DevIdentity(role, wallet_name, address, uid))
    return identities


# --- processes ---------------------------------------------------------------------------------
def stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the child's whole process group, then SIGKILL what is left after ``grace`` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # Grandchildren (sandboxes, benches) may outlive a leader that exited: the group goes in any case.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextmanager
def managed(cmd: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start a child in its own process group and always stop the whole group afterwards."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop_group(proc)


def log_tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def wait_healthy(
    url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 60.0, path: str = "/ready"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(
                f"{url} exited with code {proc.returncode}; its log ends with:\n{log_tail(log_path)}"
            )
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise DemoError(f"{url} did not become ready within {timeout:.0f}s; see {log_path}")


def wait_for(what: str, check: Callable[[], T | None], timeout: float, *, watch: Sequence[Any] = ()) -> T:
    """Poll ``check`` until it returns something; a watched child that dies ends the wait with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        for name, proc, log_path in watch:
            if proc.poll() is not None and proc.returncode != 0:
                raise DemoError(f"the {name} exited with code {proc.returncode} while waiting for {what}:\n"
                                f"{log_tail(log_path)}")  # fmt: skip
        time.sleep(0.5)
    raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether the API could listen on 127.0.0.1:`port` now.

    SO_REUSEADDR, as uvicorn binds: a port whose last connections are still in TIME_WAIT (for about
    a minute after a server stopped) is free to it, while a live listener still makes it busy.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --- kernels -----------------------------------------------------------------------------------
def _git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=QUASAR demo", "-c", "user.email=demo@quasar.invalid",
               "-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null", *args]  # fmt: skip
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def make_kernel_repo(path: Path, *, faster: bool = False, init_source: str | None = None) -> str:
    """A fresh kernel repository from `quasar kernel init`, changed as asked (``faster``: the honest
    miner's change, `quasar.demo_kernels`) and committed; its SHA."""
    from quasar.demo_kernels import TemplateChanged, faster_chunked
    from quasar.kernels.template import init_kernel_repo

    shutil.rmtree(path, ignore_errors=True)
    init_kernel_repo(path)
    package = path / "fla" / "ops" / "quasar"
    if faster:
        chunked = package / "chunked.py"
        try:
            chunked.write_text(faster_chunked(chunked.read_text()))
        except TemplateChanged as exc:
            raise DemoError(str(exc)) from None
    if init_source is not None:
        (package / "__init__.py").write_text(init_source)
    _git(path, "commit", "-qam", "QuasarAttention: demo change")
    return _git(path, "rev-parse", "HEAD")


def submit_scripted(
    client: Any, chain: Any, repo: Path, sha: str, inference_url: str | None, timeout: float = 120.0
) -> int:
    """Commit–reveal ``repo @ sha`` through the API (what a miner does), waiting for the reveal block."""
    from quasar import commitment
    from quasar.schemas import RevealPayload

    payload = RevealPayload(repo_url=str(repo), commit_sha=sha, inference_url=inference_url or None)
    salt = commitment.new_salt()
    committed = client.commit(payload.commitment(salt))
    wait_for(
        f"block {committed.reveal_block} to reveal submission {committed.submission_id}",
        lambda: chain.current_block() >= committed.reveal_block,
        timeout,
    )
    client.reveal(committed.submission_id, salt, payload)
    return int(committed.submission_id)


# --- the round ---------------------------------------------------------------------------------
@dataclass
class Demo:
    settings: Settings
    url: str
    identities: dict[str, DevIdentity]
    logs: Path
    env: dict[str, str]
    stack: ExitStack
    children: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log_path = self.logs / f"{name.replace(' ', '-')}.log"
        proc = self.stack.enter_context(managed(cmd, env or self.env, log_path))
        self.children.append((name, proc, log_path))
        return proc

    def log_of(self, name: str) -> Path:
        return next(p for n, _, p in self.children if n == name)

    def proc_of(self, name: str) -> subprocess.Popen[bytes]:
        return next(p for n, p, _ in self.children if n == name)

    def wallet(self, role: str) -> Any:
        from quasar.wallets import load_wallet

        assert self.settings.wallet_path is not None
        return load_wallet(
            self.identities[role].wallet_name, self.settings.wallet_hotkey, self.settings.wallet_path
        )

    def chain(self) -> Any:
        from quasar.chain.devchain import DevChain

        assert self.settings.dev_chain_path is not None
        return DevChain(
            self.settings.dev_chain_path, netuid=self.settings.netuid,
            block_time_seconds=self.settings.block_time_seconds or 1.0,
        )  # fmt: skip

    def watched(self) -> list[Any]:
        return [(n, p, lp) for n, p, lp in self.children if n != "honest miner"]


def fresh_round(owner_client: Any, public: Any) -> Any:
    """A round that has just opened: the owner closes whatever an earlier run left open."""
    from quasar.client import Conflict

    current = public.current_round()
    if current is not None:
        owner_client.finalize_round(current.id)
    with contextlib.suppress(Conflict):  # the API's upkeep may open the next one first
        owner_client.create_round(int(os.environ.get("ROUND_BLOCKS", DEMO_ENV["ROUND_BLOCKS"])))
    return wait_for("a new round to open", public.current_round, 30)


def describe_entry(entry: Any, names: dict[str, str], baseline_ms: float | None) -> str:
    who = names.get(entry.hotkey, entry.hotkey[:12] + "…")
    if entry.counted:
        timing = f"{entry.score:.2f}x as fast as the baseline"
        if entry.score_ci_low is not None and entry.score_ci_high is not None:
            timing += f" (95% interval {entry.score_ci_low:.2f}-{entry.score_ci_high:.2f}x)"
        if entry.median_ms and baseline_ms:
            timing += f" ({entry.median_ms:.1f} ms vs {baseline_ms:.1f} ms)"
        verified = ", logits verified" if entry.verified else ""
        return f"#{entry.rank} {who}: correct, {timing}{verified}"
    if entry.status == "scored" and entry.correct is False:
        why = describe(entry.reason) if entry.reason in REASONS else f"it failed ({entry.reason})"
        return f"–  {who}: rejected: {why} (reason code {entry.reason})"
    if entry.status == "scored" and entry.correct and entry.verified is False:
        return f"–  {who}: kernel correct, but its inference server failed logit verification"
    if entry.status == "scored" and entry.inconclusive and entry.score is not None:
        return (
            f"–  {who}: correct, {entry.score:.2f}x, but its 95% interval ({entry.score_ci_low:.2f}-"
            f"{entry.score_ci_high:.2f}x) straddles the winning margin: inconclusive, not counted"
        )
    if entry.status == "scored" and entry.score is not None:
        interval = ""
        if entry.score_ci_low is not None and entry.score_ci_high is not None:
            interval = f" (95% interval {entry.score_ci_low:.2f}-{entry.score_ci_high:.2f}x)"
        return (
            f"–  {who}: correct but only {entry.score:.2f}x the baseline{interval}: not faster by the winning"
            " margin"
        )
    why = describe(entry.reason or entry.status)
    return f"–  {who}: {entry.status} ({why})"


def summarize(demo: Demo, round_id: int, leaderboard: Any, round_info: Any, weights: Any, block: int) -> None:
    names = {i.hotkey: f"{ROLE_WORDS[i.role]} (uid {i.uid})" for i in demo.identities.values()}
    uid_words = {i.uid: ROLE_WORDS[i.role] for i in demo.identities.values()}
    console.rule(f"[bold]round {round_id} is over")
    baseline = round_info.baseline_ms
    if baseline:
        console.print(
            f"Baseline kernel, measured by the validator on its own device: {baseline:.1f} ms per call."
        )
    console.print("Leaderboard (speed measured by the validator; miners' own numbers never count):")
    for entry in leaderboard.entries:
        console.print("  " + describe_entry(entry, names, baseline))
    console.print(f"Weights set on the dev chain by the validator at block {block}:")
    table = Table("uid", "who", "weight")
    for uid, weight in zip(weights.uids, weights.weights, strict=True):
        table.add_row(str(uid), uid_words.get(uid, "?"), f"{weight:.2f}")
    console.print(table)
    burn = demo.settings.burn_uid
    if burn in weights.uids and len(weights.uids) > 1:
        console.print(
            f"  uid {burn} is the burn uid: the shares no miner earned (places 2–4 of "
            f"{demo.settings.weight_split}) go there rather than to anyone who did not beat the baseline."
        )
    elif weights.uids == [burn]:
        console.print(
            f"  nobody beat the baseline by {demo.settings.win_margin:.0%}: all weight is burned (uid {burn})."
        )


def run_round(demo: Demo, *, timeout: float) -> int:
    """One round with both miners and the validator; returns the finalized round's id."""
    from quasar.client import ValidatorApiClient

    settings = demo.settings
    public = ValidatorApiClient(demo.url)
    owner = ValidatorApiClient(demo.url, demo.wallet("owner"))
    chain = demo.chain()
    started = time.monotonic()

    def left() -> float:
        return max(timeout - (time.monotonic() - started), 1.0)

    with console.status("opening a fresh round") as status:
        rnd = fresh_round(owner, public)
        console.print(
            f"[green]✓[/] round {rnd.id} is open (blocks {rnd.start_block}–{rnd.end_block}, one block a second)"
        )

        # The miners' inference servers: validators check their logits against the reference model.
        ports = {"miner": free_port(), "cheater": free_port()}
        status.update("starting the miners' inference servers (tiny model)")
        for role, port in ports.items():
            name = f"{role} inference"
            proc = demo.start(name, [sys.executable, "-m", "quasar.cli", "inference", "--host", "127.0.0.1",
                                     "--port", str(port)])  # fmt: skip
            wait_healthy(f"http://127.0.0.1:{port}", proc, demo.log_of(name), timeout=120, path="/health")
        console.print(f"[green]✓[/] inference servers up on ports {ports['miner']} and {ports['cheater']}")

        status.update("starting the validator")
        demo.start("validator", [sys.executable, "-m", "quasar.cli", "validator"])

        # The honest miner: the real miner neuron, with a kernel truly faster on CPU.
        home = settings.quasar_home.resolve() / "demo"
        miner_dir = home / "honest-miner"
        shutil.rmtree(miner_dir, ignore_errors=True)
        make_kernel_repo(miner_dir / "workspace", faster=True)
        miner_env = {
            **demo.env, "MINER_STATE_DIR": str(miner_dir), "MINER_WORKSPACE": str(miner_dir / "workspace"),
            "MINER_STRATEGY": "manual", "MINER_MIN_SPEEDUP": "0", "MINER_BENCH_QUICK": "true",
            "WALLET_MINER_NAME": DEV_ROLES["miner"],
        }  # fmt: skip
        status.update("honest miner: benchmarking its kernel, then commit–reveal")
        miner = demo.start("honest miner", [sys.executable, "-m", "quasar.cli", "miner", "--once",
                                            "--axon.port", str(ports["miner"])], env=miner_env)  # fmt: skip

        # The cheater: a kernel that returns zeros, submitted through the same commit–reveal.
        status.update("cheating miner: committing a kernel that returns zeros")
        cheat_sha = make_kernel_repo(home / "cheating-miner", init_source=ZEROS_KERNEL)
        cheater = ValidatorApiClient(demo.url, demo.wallet("cheater"))
        cheat_id = submit_scripted(cheater, chain, home / "cheating-miner", cheat_sha,
                                   f"http://127.0.0.1:{ports['cheater']}", timeout=left())  # fmt: skip
        console.print(
            f"[green]✓[/] cheating miner revealed submission {cheat_id} (a kernel that returns zeros)"
        )

        status.update("honest miner: benchmarking its kernel, then commit–reveal")
        honest_hotkey = demo.identities["miner"].hotkey

        def honest_revealed() -> Any:
            if miner.poll() not in (None, 0):
                raise DemoError(f"the honest miner exited with code {miner.returncode}:\n"
                                f"{log_tail(demo.log_of('honest miner'))}")  # fmt: skip
            board = public.leaderboard(rnd.id)
            return next(
                (e for e in board.entries if e.hotkey == honest_hotkey and e.status != "committed"), None
            )

        entry = wait_for(
            "the honest miner to reveal its submission", honest_revealed, left(), watch=demo.watched()
        )
        console.print(f"[green]✓[/] honest miner revealed submission {entry.submission_id} ({HONEST_CHANGE})")

        final = {"scored", "rejected", "duplicate", "expired"}
        seen: dict[int, str] = {}

        def all_evaluated() -> bool:
            board = public.leaderboard(rnd.id)
            for e in board.entries:
                if seen.get(e.submission_id) != e.status:
                    seen[e.submission_id] = e.status
                    who = "honest miner" if e.hotkey == honest_hotkey else "cheating miner"
                    status.update(f"validator: {who}'s submission {e.submission_id} is {e.status}")
            return len(board.entries) >= 2 and all(e.status in final for e in board.entries)

        status.update("validator: evaluating the submissions in the sandbox")
        wait_for("the validator to evaluate both submissions", all_evaluated, left(), watch=demo.watched())
        console.print("[green]✓[/] the validator evaluated both submissions")

        status.update("the owner closes the round; the API computes the weights")
        done = owner.finalize_round(rnd.id)
        validator_hotkey = demo.identities["validator"].hotkey
        weights = public.weights()
        if weights.round_id != done.id:
            raise DemoError(f"the API's weights are of round {weights.round_id}, not of round {done.id}")

        api_total = sum(weights.weights) or 1.0
        wanted = {u: w / api_total for u, w in zip(weights.uids, weights.weights, strict=True) if w > 0}

        def weights_on_chain() -> Any:
            records = chain.weights(validator_hotkey)
            last = records[-1] if records else None
            if last is None or last.block < (done.finalized_block or 0):
                return None
            # The validator normalises and orders the vector itself (quasar/validator/weights.py).
            total = sum(last.weights) or 1.0
            have = {
                uid: share / total for uid, share in zip(last.uids, last.weights, strict=True) if share > 0
            }
            if have.keys() == wanted.keys() and all(abs(have[u] - wanted[u]) < 1e-6 for u in wanted):
                return last
            return None

        status.update("waiting for the validator to set the weights on the dev chain")
        record = wait_for("the validator to set the round's weights on chain", weights_on_chain, left(),
                          watch=demo.watched())  # fmt: skip
    summarize(demo, rnd.id, public.leaderboard(rnd.id), public.get_round(rnd.id), weights, record.block)
    return int(rnd.id)


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
        console.print(
            f"round {current.id}: blocks {current.start_block}–{current.end_block} ({current.status})"
        )
    weights = client.weights()
    console.print(f"weights: uids {weights.uids} → {weights.weights}")


def keep_running(demo: Demo, last_round: int) -> None:
    """Stay up: rounds open and close by themselves; report each new round's weights until Ctrl-C."""
    from quasar.client import ApiError, ValidatorApiClient

    public = ValidatorApiClient(demo.url)
    console.print(f"still running (--keep-running): rounds open and close every {os.environ.get('ROUND_BLOCKS')} "
                  f"blocks, the validator sets weights after each. Logs: {demo.logs}. Ctrl-C stops everything.")  # fmt: skip
    while True:
        for name, proc, log_path in demo.watched():
            if proc.poll() is not None:
                raise DemoError(f"the {name} exited with code {proc.returncode}:\n{log_tail(log_path)}")
        try:
            weights = public.weights()
        except ApiError:
            weights = None
        if weights is not None and weights.round_id is not None and weights.round_id > last_round:
            last_round = weights.round_id
            pairs = ", ".join(f"uid {u}: {w:.2f}" for u, w in zip(weights.uids, weights.weights, strict=True))
            console.print(f"round {last_round} finalized; weights {pairs}")
        time.sleep(2)


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
