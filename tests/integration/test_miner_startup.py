"""What ``quasar miner`` refuses before it benches anything: each refusal is one ``error:`` line on
stderr and exit status 2, from a real miner process (embedded dev chain, real git, real sandbox probe).

* the Validator API does not answer, with ``--once`` (without it: a warning, and the miner goes on);
* logit verification is on and no inference server address can be published (MINER_EXTERNAL_IP unset
  on a real chain: validators read the address from the chain);
* no sandbox can be built for candidates (a ``bwrap`` that fails as in a default Docker container, and
  no ``unshare``) and MINER_ALLOW_UNSANDBOXED_CANDIDATES is not set;
* ``tune`` on a workspace whose kernel is not ``quasar kernel init``'s layout.

And the warning when the inference server answers nowhere (behind NAT the public address may not
answer from inside, so the local port is asked first).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi import FastAPI

from quasar.config import Settings
from quasar.miner.cli import _check_inference_server
from quasar.wallets import create_dev_wallet
from tests.failing_bwrap import STDERR as FAILING_BWRAP_STDERR

from .conftest import free_port, serve
from .miner_helpers import bare_repo, base_env, git

MINER_FLAGS = ["--wallet.name", "miner_start", "--wallet.hotkey", "default", "--strategy", "manual"]


def embedded_env(tmp_path: Path, **values: object) -> dict[str, str]:
    return base_env(
        QUASAR_HOME=tmp_path / "home", SUBTENSOR_NETWORK="embedded", WALLET_PATH=tmp_path / "wallets",
        MINER_STATE_DIR=tmp_path / "state", GIT_REMOTE_URL=bare_repo(tmp_path / "fork.git"), DEVICE="cpu",
        VALIDATOR_API_URL=f"http://127.0.0.1:{free_port()}", **values,
    )  # fmt: skip


def run_miner(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "neurons.miner", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def the_error(done: subprocess.CompletedProcess[str]) -> str:
    """The one ``error:`` line the miner printed (logs share stderr)."""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2 and len(errors) == 1, (done.returncode, done.stderr[-3000:])
    return errors[0]


def test_api_down_with_once_is_said_first_and_exits_non_zero(tmp_path: Path) -> None:
    env = embedded_env(tmp_path)
    started = time.monotonic()
    done = run_miner([*MINER_FLAGS, "--once"], env, tmp_path)
    error = the_error(done)
    assert f"the Validator API at {env['VALIDATOR_API_URL']} does not answer" in error
    assert "VALIDATOR_API_URL" in error.split("does not answer", 1)[1]
    # Said before anything was benched, or even cloned.
    assert "bench of" not in done.stderr and not (tmp_path / "state" / "workspace").exists()
    assert time.monotonic() - started < 60


def test_no_published_inference_address_with_verification_on_is_refused(tmp_path: Path) -> None:
    create_dev_wallet("miner_start", "default", tmp_path / "wallets")
    env = base_env(
        QUASAR_HOME=tmp_path / "home", WALLET_PATH=tmp_path / "wallets", MINER_STATE_DIR=tmp_path / "state",
        GIT_REMOTE_URL="https://github.com/alice/flash-linear-attention",
        MINER_INFERENCE_URL="http://203.0.113.7:8001",  # revealed, but validators read the chain
        VALIDATOR_API_URL=f"http://127.0.0.1:{free_port()}",
    )  # fmt: skip
    args = [*MINER_FLAGS, "--subtensor.network", "test", "--once"]
    error = the_error(run_miner(args, env, tmp_path))
    assert "MINER_EXTERNAL_IP is not set" in error and "none is committed" in error
    assert "Set MINER_EXTERNAL_IP" in error
    # With the address set (or verification off) this check passes: the next one (the API) speaks.
    for extra in ({"MINER_EXTERNAL_IP": "203.0.113.7"}, {"ENABLE_LOGIT_VERIFICATION": "false"}):
        error = the_error(run_miner(args, {**env, **extra}, tmp_path))
        assert "MINER_EXTERNAL_IP" not in error and "does not answer" in error, error


def tools_without_a_sandbox(tmp_path: Path) -> Path:
    """A PATH where bubblewrap fails as in a default Docker container and ``unshare`` is missing."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "bwrap").write_text(f"#!/bin/sh\necho '{FAILING_BWRAP_STDERR}' >&2\nexit 1\n")
    (tools / "bwrap").chmod(0o755)
    for tool in ("git", "sh"):
        (tools / tool).symlink_to(
            subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        )
    return tools


def test_candidates_are_refused_where_no_sandbox_can_be_built(tmp_path: Path) -> None:
    env = embedded_env(tmp_path, PATH=tools_without_a_sandbox(tmp_path))
    done = run_miner(MINER_FLAGS, env, tmp_path)  # not --once: an API that is down is only a warning
    error = the_error(done)
    assert "candidate kernels cannot run here, no sandbox can be built" in error
    assert FAILING_BWRAP_STDERR.removeprefix("bwrap: ") in error
    assert "MINER_ALLOW_UNSANDBOXED_CANDIDATES=true" in error
    assert "does not answer" in done.stderr  # the API warning came first, and did not stop it
    assert "bench of" not in done.stderr


def test_tune_on_a_kernel_that_is_not_the_templates_is_refused(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    kernel = workspace / "fla" / "ops" / "quasar"
    kernel.mkdir(parents=True)
    (kernel / "__init__.py").write_text("from .chunk import chunk_quasar\n")
    (kernel / "chunk.py").write_text("def chunk_quasar(*args):\n    raise NotImplementedError\n")
    git("init", "-q", str(workspace))
    git("add", "-A", cwd=workspace)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "the original's layout", cwd=workspace)
    env = embedded_env(tmp_path, MINER_WORKSPACE=workspace)
    done = run_miner([*MINER_FLAGS[:-1], "tune"], env, tmp_path)
    error = the_error(done)
    assert "MINER_STRATEGY=tune has nothing to tune" in error and "`quasar kernel init`'s layout" in error
    assert "bench of" not in done.stderr


def test_an_inference_server_that_answers_nowhere_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(_env_file=None, quasar_home=tmp_path, miner_inference_port=free_port())  # type: ignore[call-arg]
    public = f"http://127.0.0.1:{free_port()}"  # stands for the public address, which answers nothing here
    with caplog.at_level(logging.WARNING, logger="quasar.miner"):
        _check_inference_server(settings, settings.miner_inference_port, public)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "the inference server does not answer" in warnings[0]
    assert f"http://127.0.0.1:{settings.miner_inference_port}/health" in warnings[0] and public in warnings[0]
    # A server on the local port answers: no warning, whatever the public address does.
    app = FastAPI()
    app.get("/health")(lambda: {"status": "ok"})
    server, thread = serve(app, settings.miner_inference_port)
    try:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="quasar.miner"):
            _check_inference_server(settings, settings.miner_inference_port, public)
        assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    finally:
        server.should_exit = True
        thread.join(timeout=15)
