"""A validator SIGKILLed in the middle of an evaluation loses nothing: the job comes back when its lease
lapses, and the round ends as it would have (the honest miner on top, the cheater with nothing).

Real processes throughout: the API (`quasar api`) on SQLite, the dev chain, and `quasar validator`,
killed with its whole process group (its sandbox dies with it) and started again. Submissions are
committed and revealed through the API as a miner would (`quasar.local.kernels.submit_scripted`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quasar.client import ValidatorApiClient
from quasar.config import Settings
from quasar.local.hotkeys import prepare_chain_and_wallets
from quasar.local.kernels import ZEROS_KERNEL, make_kernel_repo, submit_scripted
from quasar.local.processes import managed, stop_group, wait_for, wait_healthy
from quasar.wallets import load_wallet

from .conftest import clean_env, free_port, rows

pytestmark = pytest.mark.slow
LEASE_SECONDS = 6


def test_sigkill_mid_evaluation_then_restart_finishes_the_round(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    home = tmp_path / ".quasar"
    env = clean_env(
        QUASAR_HOME=home, VALIDATOR_API_URL=url, JOB_LEASE_SECONDS=LEASE_SECONDS, ENABLE_LOGIT_VERIFICATION="false",
        DEVICE="cpu", VALIDATOR_POLL_SECONDS="0.5", ROUND_BLOCKS="3000", OMP_NUM_THREADS="1", LOG_LEVEL="INFO",
        # What is tested is the crash and the lease, not the speed-up's precision nor the reveal delay:
        # fewer timed runs, and a reveal one block (one second) after its commit instead of five.
        EVALUATION_QUICK="true", BLOCKS_UNTIL_REVEAL="1",
    )  # fmt: skip
    settings = Settings(_env_file=None, quasar_home=home)  # type: ignore[call-arg]
    identities = {i.role: i for i in prepare_chain_and_wallets(settings)}
    subprocess.run([sys.executable, "-m", "quasar.cli", "db", "upgrade"], env=env, cwd=tmp_path, check=True)
    logs = home / "logs"
    with managed(
        [sys.executable, "-m", "quasar.cli", "api", "--port", str(port)], env, logs / "api.log"
    ) as api:
        wait_healthy(url, api, logs / "api.log")
        public = ValidatorApiClient(url)
        round_ = wait_for("the first round", public.current_round, 30)
        chain = _chain(settings)
        wallet = {
            role: load_wallet(i.wallet_name, "default", home / "wallets") for role, i in identities.items()
        }
        honest_sha = make_kernel_repo(tmp_path / "honest", faster=True)
        cheat_sha = make_kernel_repo(tmp_path / "cheat", init_source=ZEROS_KERNEL)
        honest_id = submit_scripted(
            ValidatorApiClient(url, wallet["miner"]), chain, tmp_path / "honest", honest_sha, None
        )
        cheat_id = submit_scripted(
            ValidatorApiClient(url, wallet["cheater"]), chain, tmp_path / "cheat", cheat_sha, None
        )

        # The validator takes the oldest job (the honest one) and is killed while evaluating it.
        first_log = logs / "validator-1.log"
        with managed([sys.executable, "-m", "quasar.cli", "validator"], env, first_log) as validator:
            wait_for("the validator to start an evaluation", lambda: "attempt 1" in _read(first_log), 120,
                     watch=[("validator", validator, first_log)])  # fmt: skip
            job_id = int(re.search(r"job (\d+): submission (\d+)", _read(first_log)).group(1))  # type: ignore[union-attr]
            time.sleep(2)  # inside the sandboxed evaluation
            os.killpg(validator.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            validator.wait(timeout=10)
        assert f"job {job_id}: " in _read(first_log) and "posted" not in _read(first_log)
        db = home / "validator_api.db"
        assert rows(db, "SELECT status FROM jobs WHERE id = ?", job_id)[0]["status"] == "claimed"

        # Restarted, it evaluates the other job at once and the killed one after its lease lapsed.
        second_log = logs / "validator-2.log"
        with managed([sys.executable, "-m", "quasar.cli", "validator"], env, second_log) as validator:

            def both_scored() -> bool:
                subs = {s: public.get_submission(s) for s in (honest_id, cheat_id)}
                return all(s.status == "scored" for s in subs.values())

            wait_for(
                "both submissions to be scored",
                both_scored,
                240,
                watch=[("validator", validator, second_log)],
            )
            reclaimed = rows(db, "SELECT * FROM jobs WHERE id = ?", job_id)[0]
            assert reclaimed["status"] == "done" and f"job {job_id}: " in _read(second_log)
            assert time.monotonic() - killed_at >= LEASE_SECONDS
            assert len(rows(db, "SELECT * FROM results WHERE job_id = ?", job_id)) == 1

            owner = ValidatorApiClient(url, wallet["owner"])
            owner.finalize_round(round_.id)
            hotkey = identities["validator"].hotkey

            def weights_set() -> object:
                records = chain.weights(hotkey)
                return records and records[-1].uids != [settings.burn_uid] and records[-1]

            record = wait_for(
                "weights on the dev chain", weights_set, 60, watch=[("validator", validator, second_log)]
            )
            stop_group(validator)
        weights = dict(zip(record.uids, record.weights, strict=True))
        assert weights[identities["miner"].uid] == pytest.approx(0.60)
        assert identities["cheater"].uid not in weights
        assert public.get_submission(cheat_id).reason == "incorrect_output"


def _chain(settings: Settings):  # type: ignore[no-untyped-def]
    from quasar.chain.devchain import DevChain

    assert settings.dev_chain_path is not None
    return DevChain(settings.dev_chain_path, netuid=settings.netuid, block_time_seconds=1.0)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
