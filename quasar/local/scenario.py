"""The round `quasar local up` runs: the children it starts, what it submits, and what it waits for."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quasar.config import Settings
from quasar.demo_kernels import HONEST_CHANGE
from quasar.local.hotkeys import DEV_ROLES, DevIdentity
from quasar.local.kernels import ZEROS_KERNEL, make_kernel_repo, submit_scripted
from quasar.local.processes import DemoError, free_port, log_tail, managed, wait_for, wait_healthy
from quasar.local.report import console, summarize

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
    summarize(
        settings, demo.identities.values(), rnd.id, public.leaderboard(rnd.id), public.get_round(rnd.id), weights,
        record.block,
    )  # fmt: skip
    return int(rnd.id)



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
