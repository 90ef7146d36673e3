"""The miner end to end: real API, dev chain, bare git remote, a real miner process killed and restarted.

It shows the commit–reveal order the design requires: the commitment is recorded by the API while
the remote has nothing; the kernel reaches the remote only at the reveal block; a SIGKILL between
commit and reveal and a restart still reveal in time, with no second commitment.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from quasar.kernels.template import init_kernel_repo
from quasar.wallets import create_dev_wallet

from .conftest import FROZEN_BLOCK_TIME, ApiServer
from .miner_helpers import (
    bare_repo,
    base_env,
    has_object,
    read_state,
    remote_refs,
    start_miner,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_commit_before_push_kill_and_resume_reveals(
    start_api: Callable[..., ApiServer], tmp_path: Path
) -> None:
    api = start_api("sqlite")
    api.new_round()
    wallets = tmp_path / "wallets"
    wallet = create_dev_wallet("miner_it", "default", wallets)
    hotkey = wallet.hotkey.ss58_address
    api.chain.register(hotkey, "miner")

    upstream = tmp_path / "upstream"
    init_kernel_repo(upstream)
    remote = bare_repo(tmp_path / "fork.git")
    state_dir = tmp_path / "miner-state"
    log = tmp_path / "miner.log"
    env = base_env(
        QUASAR_HOME=tmp_path / "home",
        SUBTENSOR_NETWORK="embedded",
        DEV_CHAIN_PATH=api.settings.dev_chain_path,
        BLOCK_TIME_SECONDS=FROZEN_BLOCK_TIME,
        WALLET_PATH=wallets,
        MINER_STATE_DIR=state_dir,
        TARGET_REPO_URL=upstream,
        GIT_REMOTE_URL=remote,
        MINER_BENCH_QUICK="true",
        MINER_MIN_SPEEDUP="0",
        DEVICE="cpu",
        LOG_LEVEL="INFO",
    )
    args = [
        "--once", "--wallet.name", "miner_it", "--wallet.hotkey", "default", "--subtensor.network", "embedded",
        "--netuid", str(api.settings.netuid), "--strategy", "manual", "--api-url", api.base_url,
    ]  # fmt: skip

    miner = start_miner(args, env, tmp_path, log)
    try:
        state = wait_for(
            lambda: (s := read_state(state_dir)).get("pending", {}) and s["pending"]["phase"] == "committed" and s,
            timeout=240, what="the commitment", proc=miner, log=log,
        )  # fmt: skip
        pending = state["pending"]
        sha, submission_id = pending["payload"]["commit_sha"], pending["submission_id"]
        # Recorded by the API ...
        sub = api.get(f"/v1/submissions/{submission_id}").json()
        assert sub["status"] == "committed" and sub["hotkey"] == hotkey
        assert sub["commitment_hash"] == pending["commitment_hash"]
        # ... while the kernel is nowhere public yet.
        assert remote_refs(remote) == {} and not has_object(remote, sha)

        os.killpg(miner.pid, signal.SIGKILL)
        miner.wait(timeout=30)
    finally:
        if miner.poll() is None:
            os.killpg(miner.pid, signal.SIGKILL)
    assert read_state(state_dir)["pending"]["phase"] == "committed"
    assert remote_refs(remote) == {}

    miner = start_miner(args, env, tmp_path, log)
    try:
        wait_for(
            lambda: log.read_text().count("waiting for block") >= 2, 120, "the restarted miner", miner, log
        )
        assert remote_refs(remote) == {}  # still before the reveal block: nothing pushed
        api.advance(api.settings.blocks_until_reveal or 5)
        assert miner.wait(timeout=180) == 0, log.read_text()[-4000:]
    finally:
        if miner.poll() is None:
            os.killpg(miner.pid, signal.SIGKILL)

    sub = api.get(f"/v1/submissions/{submission_id}").json()
    assert sub["status"] in ("revealed", "evaluating"), sub
    assert sub["commit_sha"] == sha and sub["revealed_block"] >= sub["reveal_block"]
    assert Path(sub["repo_url"]) == remote
    refs = remote_refs(remote)
    assert refs["refs/heads/quasar-miner"] == sha
    assert refs[f"refs/tags/quasar-submission-{submission_id}"] == sha
    # One commitment only, across the kill and restart.
    mine = [e for e in api.get("/v1/leaderboard").json()["entries"] if e["hotkey"] == hotkey]
    assert [e["submission_id"] for e in mine] == [submission_id]
    final = read_state(state_dir)
    assert final["pending"] is None and submission_id in final["following"]
    # The inference server's address was published on the dev chain (ServeAxon's counterpart).
    neuron = api.chain.metagraph().get(hotkey)
    assert neuron is not None and neuron.axon_ip == "127.0.0.1" and neuron.axon_port == 8001
