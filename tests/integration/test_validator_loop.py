"""The validator against the real API and dev chain, evaluating real submissions in the real sandbox.

Submissions are git repositories made from ``quasar kernel init``: an honest one (smaller chunks) and
a cheat that returns zeros. The validator runs in this process (``build_validator``), as
``quasar validator`` builds it. Kernel speed is not what these tests are about (the end-to-end test
is), so WIN_MARGIN is relaxed here to keep them deterministic on a busy machine.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quasar.client import ValidatorApiClient
from quasar.config import Settings
from quasar.kernels.template import init_kernel_repo
from quasar.schemas import JobResult
from quasar.validator.cli import build_validator, state_dir
from quasar.validator.lease import LeaseKeeper
from quasar.validator.posting import ResultSpool
from quasar.wallets import load_or_create_dev_wallet
from tests.failing_bwrap import STDERR as FAILING_BWRAP_STDERR
from tests.failing_bwrap import put_failing_bwrap_first

from .conftest import FROZEN_BLOCK_TIME, ApiServer

pytestmark = pytest.mark.slow

ZEROS = """
import torch

def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    n = q.shape[0] if cu_seqlens is None else len(cu_seqlens) - 1
    final = torch.zeros(n, q.shape[2], k.shape[-1], v.shape[-1]) if output_final_state else None
    return torch.zeros_like(v), final
"""


def _sandbox_or_skip() -> None:
    from quasar.evaluation.sandbox import SandboxUnavailable, detect

    try:
        detect()
    except SandboxUnavailable as exc:
        pytest.skip(f"no sandbox on this machine: {exc}")


def kernel_repo(path: Path, *, chunk_size: int | None = None, init_source: str | None = None) -> str:
    """A submission repository; returns its commit SHA."""
    init_kernel_repo(path)
    package = path / "fla" / "ops" / "quasar"
    if chunk_size is not None:
        chunked = package / "chunked.py"
        chunked.write_text(
            chunked.read_text().replace("DEFAULT_CHUNK_SIZE = 64", f"DEFAULT_CHUNK_SIZE = {chunk_size}")
        )
    if init_source is not None:
        (package / "__init__.py").write_text(init_source)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@quasar.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "commit", "-qam", "submission", "--allow-empty"], cwd=path, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True
    ).stdout.strip()


def validator_settings(api: ApiServer, home: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "quasar_home": home,
        "subtensor_network": "embedded",
        "dev_chain_path": api.settings.dev_chain_path,
        "block_time_seconds": FROZEN_BLOCK_TIME,
        "validator_api_url": api.base_url,
        "wallet_path": home / "wallets",
        "wallet_validator_name": "validator_it",
        "enable_logit_verification": False,
        "device": "cpu",
        "validator_poll_seconds": 0.3,
        "evaluation_quick": True,
        "evaluation_timeout_seconds": 300.0,
        "sandbox_memory_mb": 4096,
        "sandbox_max_pids": 256,
        "log_level": "INFO",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_validator_scores_honest_fails_cheat_and_sets_weights(
    start_api: Callable[..., ApiServer], tmp_path: Path
) -> None:
    _sandbox_or_skip()
    api = start_api("sqlite", win_margin=-0.9)
    api.new_round()
    honest_sha = kernel_repo(tmp_path / "honest", chunk_size=16)
    cheat_sha = kernel_repo(tmp_path / "cheat", init_source=ZEROS)
    honest = api.commit_and_reveal(api.miners[0], repo_url=str(tmp_path / "honest"), commit_sha=honest_sha)
    cheat = api.commit_and_reveal(api.miners[1], repo_url=str(tmp_path / "cheat"), commit_sha=cheat_sha)

    settings = validator_settings(api, tmp_path / "validator")
    neuron = build_validator(settings, threading.Event())
    neuron.run(once=True)
    assert neuron.progress.posted == 2 and neuron.progress.refused == 0

    client = ValidatorApiClient(api.base_url)
    good, bad = client.get_submission(honest["id"]), client.get_submission(cheat["id"])
    assert good.status == "scored" and good.reason is None and good.score is not None, good
    assert good.kernel_tree_hash is not None
    assert bad.status == "scored" and bad.reason == "incorrect_output" and bad.score is None, bad

    # The owner closes the round; the validator sets the weights the API computed.
    round_id = client.current_round().id  # type: ignore[union-attr]
    api.call(api.owner, "POST", f"/v1/rounds/{round_id}/finalize").raise_for_status()
    assert neuron.weight_setter.maybe_set() is not None
    wallet = load_or_create_dev_wallet("validator_it", "default", settings.wallet_path)
    records = api.chain.weights(wallet.hotkey.ss58_address)
    assert records, "no weights on the dev chain"
    on_chain = dict(zip(records[-1].uids, records[-1].weights, strict=True))
    honest_uid = api.chain.metagraph().uid_of(api.miners[0].ss58_address)
    cheat_uid = api.chain.metagraph().uid_of(api.miners[1].ss58_address)
    assert on_chain[honest_uid] == pytest.approx(0.60)
    assert cheat_uid not in on_chain
    # Unchanged weights are not set again before a tempo has passed.
    assert neuron.weight_setter.maybe_set() is None


def test_lease_keeper_holds_a_job_past_its_lease(start_api: Callable[..., ApiServer], tmp_path: Path) -> None:
    api = start_api("sqlite", job_lease_seconds=2)
    api.new_round()
    api.commit_and_reveal()
    settings = validator_settings(api, tmp_path / "v")
    first = ValidatorApiClient(api.base_url, load_or_create_dev_wallet("v1", "default", settings.wallet_path))
    second = ValidatorApiClient(
        api.base_url, load_or_create_dev_wallet("v2", "default", settings.wallet_path)
    )
    for client in (first, second):
        api.chain.register(client.hotkey, "validator", stake=1000.0)  # type: ignore[arg-type]
    time.sleep(1.2)  # the API's metagraph cache
    job = first.claim_job()
    assert job is not None
    with LeaseKeeper(first, job.job_id, job.lease_seconds) as lease:
        time.sleep(5)  # two and a half leases
        assert second.claim_job() is None, "a kept lease must not lapse"
    assert lease.beats >= 3 and not lease.lost.is_set()
    time.sleep(2.5)  # no more heartbeats: the lease lapses and the job is claimable again
    again = second.claim_job()
    assert again is not None and again.job_id == job.job_id


def test_spooled_result_is_posted_at_the_next_start(
    start_api: Callable[..., ApiServer], tmp_path: Path
) -> None:
    api = start_api("sqlite")
    api.new_round()
    sub = api.commit_and_reveal()
    settings = validator_settings(api, tmp_path / "v")
    neuron = build_validator(settings, threading.Event())  # registers the validator's hotkey
    time.sleep(1.2)
    wallet = load_or_create_dev_wallet("validator_it", "default", settings.wallet_path)
    client = ValidatorApiClient(api.base_url, wallet)
    job = client.claim_job()
    assert job is not None
    # A crash after the evaluation, before the post: the result is only in the spool.
    result = JobResult(verdict="fail", reason="incorrect_output", detail="spooled before a crash")
    ResultSpool(state_dir(settings) / "results").save(job.job_id, result)
    neuron.run(once=True)  # the restart
    assert not list((state_dir(settings) / "results").glob("*.json"))
    assert ValidatorApiClient(api.base_url).get_submission(sub["id"]).reason == "incorrect_output"


def test_no_claim_without_the_required_sandbox(
    start_api: Callable[..., ApiServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    import logging
    import os

    from quasar.evaluation import sandbox as sandbox_module

    _sandbox_or_skip()
    api = start_api("sqlite", win_margin=-0.9)
    api.new_round()
    sha = kernel_repo(tmp_path / "honest")
    sub = api.commit_and_reveal(api.miners[0], repo_url=str(tmp_path / "honest"), commit_sha=sha)
    # bubblewrap fails as it does in a default Docker container.
    put_failing_bwrap_first(tmp_path, monkeypatch)
    try:
        neuron = build_validator(
            validator_settings(api, tmp_path / "v1", sandbox_require="bwrap"), threading.Event()
        )
        with caplog.at_level(logging.INFO, logger="quasar.validator"):
            neuron.run(once=True)
        assert neuron.progress.claimed == 0 and neuron.progress.posted == 0
        problem = neuron.progress.sandbox_problem or ""
        assert FAILING_BWRAP_STDERR in problem and "apt-get install bubblewrap" in problem
        assert "claiming no jobs" in caplog.text
        client = ValidatorApiClient(api.base_url)
        assert client.get_submission(sub["id"]).status == "revealed"  # left for a validator that can run it

        if os.geteuid() != 0:
            return
        # A root validator that accepts namespaces builds its own walls, evaluates, and says where.
        neuron = build_validator(
            validator_settings(
                api, tmp_path / "v2", sandbox_require="namespaces", wallet_validator_name="validator_b"
            ),
            threading.Event(),
        )
        neuron.run(once=True)
        assert neuron.progress.posted == 1
        scored = client.get_submission(sub["id"])
        assert scored.status == "scored" and (scored.sandbox or "").startswith("unshare walls, "), scored
    finally:
        monkeypatch.undo()
        sandbox_module.forget_probes()
