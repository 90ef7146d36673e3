"""Push over SSH, reveal the https URL: GIT_PUSH_URL for git, GIT_REMOTE_URL for validators.

A real miner process commits through the real API, pushes at the reveal block over git's ssh
transport and reveals. The "ssh" is a script named by GIT_SSH_COMMAND (git's own hook for it): it
records how git called it and runs the command git asked for (``git-receive-pack 'alice/fla.git'``)
against a bare repository on this machine, as sshd would. The API then holds the https URL, and the
kernel is on the repository git pushed to.
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
from .miner_helpers import bare_repo, base_env, read_state, remote_refs, start_miner, wait_for

pytestmark = pytest.mark.slow

HTTPS_URL = "https://github.com/alice/flash-linear-attention"
SSH_URL = "git@ssh.example.invalid:alice/fla.git"


def fake_ssh(tmp_path: Path, root: Path) -> tuple[Path, Path]:
    """An ``ssh`` for GIT_SSH_COMMAND: runs git's remote command in ``root``; logs its arguments."""
    calls = tmp_path / "ssh-calls.log"
    script = tmp_path / "fake-ssh"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> "{calls}"\n'
        "for command; do :; done\n"  # the last argument is the command to run on the server
        f'cd "{root}" && exec sh -c "$command"\n'
    )
    script.chmod(0o755)
    return script, calls


def test_push_over_ssh_and_reveal_https(start_api: Callable[..., ApiServer], tmp_path: Path) -> None:
    api = start_api("sqlite")
    api.new_round()
    wallets = tmp_path / "wallets"
    hotkey = create_dev_wallet("miner_ssh", "default", wallets).hotkey.ss58_address
    api.chain.register(hotkey, "miner")
    upstream = tmp_path / "upstream"
    init_kernel_repo(upstream)
    ssh_root = tmp_path / "ssh-root"
    fork = bare_repo(ssh_root / "alice" / "fla.git")
    ssh, calls = fake_ssh(tmp_path, ssh_root)
    state_dir, log = tmp_path / "miner-state", tmp_path / "miner.log"
    env = base_env(
        QUASAR_HOME=tmp_path / "home", SUBTENSOR_NETWORK="embedded", DEV_CHAIN_PATH=api.settings.dev_chain_path,
        BLOCK_TIME_SECONDS=FROZEN_BLOCK_TIME, WALLET_PATH=wallets, MINER_STATE_DIR=state_dir,
        TARGET_REPO_URL=upstream, GIT_REMOTE_URL=HTTPS_URL, GIT_PUSH_URL=SSH_URL, GIT_SSH_COMMAND=ssh,
        MINER_BENCH_QUICK="true", MINER_MIN_SPEEDUP="0", DEVICE="cpu", LOG_LEVEL="INFO",
    )  # fmt: skip
    args = [
        "--once", "--wallet.name", "miner_ssh", "--wallet.hotkey", "default", "--subtensor.network", "embedded",
        "--netuid", str(api.settings.netuid), "--strategy", "manual", "--api-url", api.base_url,
    ]  # fmt: skip
    miner = start_miner(args, env, tmp_path, log)
    try:
        state = wait_for(
            lambda: (s := read_state(state_dir)).get("pending") and s["pending"]["phase"] == "committed" and s,
            timeout=240, what="the commitment", proc=miner, log=log,
        )  # fmt: skip
        assert remote_refs(fork) == {}  # committed, nothing public yet
        api.advance(api.settings.blocks_until_reveal or 5)
        assert miner.wait(timeout=180) == 0, log.read_text()[-4000:]
    finally:
        if miner.poll() is None:
            os.killpg(miner.pid, signal.SIGKILL)
    pending = state["pending"]
    sha, submission_id = pending["payload"]["commit_sha"], pending["submission_id"]
    # Validators are told the https URL ...
    sub = api.get(f"/v1/submissions/{submission_id}").json()
    assert sub["repo_url"] == HTTPS_URL and sub["commit_sha"] == sha, sub
    assert pending["payload"]["repo_url"] == HTTPS_URL
    # ... while git pushed over ssh, to the host and path of GIT_PUSH_URL.
    assert remote_refs(fork)["refs/heads/quasar-miner"] == sha
    assert remote_refs(fork)[f"refs/tags/quasar-submission-{submission_id}"] == sha
    ssh_calls = calls.read_text()
    assert "git@ssh.example.invalid git-receive-pack 'alice/fla.git'" in ssh_calls, ssh_calls
    text = log.read_text()
    assert f"pushing to {SSH_URL}, revealing {HTTPS_URL}" in text
    # The candidate ran in the sandbox, and the missing inference server was pointed out.
    assert "candidate kernels run in the validators' sandbox (" in text
    assert "the inference server does not answer at http://127.0.0.1:8001/health" in text
