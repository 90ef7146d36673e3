"""The typed client against the real Validator API (uvicorn, SQLite and PostgreSQL, real sr25519 keys).

One whole round through `quasar.client.ValidatorApiClient` — commit → reveal → claim → heartbeat →
result → finalize → leaderboard → weights — then the refusals a caller must be able to act on,
each as its typed error carrying the API's code, and the retry policy against a server that is
really down for a moment. Servers and keys come from tests/integration/conftest.py.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
import uvicorn

from quasar import commitment
from quasar.client import (
    ApiUnavailable,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ValidatorApiClient,
)
from quasar.schemas import Job, Round, Submission
from validator_api.app import create_app

PASS_RESULT: dict[str, Any] = {
    "verdict": "pass",
    "reason": "ok",
    "median_ms": 1.25,
    "baseline_ms": 2.5,
    "speedup": 2.0,
    "max_rel_error": 4e-3,
    "peak_mem_mb": 512.0,
    "kernel_tree_hash": "c" * 40,
}


def material(
    repo_url: str = "https://github.com/miner/flash-linear-attention",
) -> tuple[bytes, dict[str, Any], str]:
    salt = commitment.new_salt()
    payload = {"repo_url": repo_url, "commit_sha": commitment.new_salt()[:20].hex()}
    return salt, payload, commitment.commitment_hash(salt, payload)


@pytest.fixture(scope="module")
def clients(api):
    made = {
        "public": ValidatorApiClient(api.base_url),
        "owner": ValidatorApiClient(api.base_url, api.owner),
        "miner": ValidatorApiClient(api.base_url, api.miner),
        "miner2": ValidatorApiClient(api.base_url, api.miners[1]),
        "validator": ValidatorApiClient(api.base_url, api.validator),
        "stranger": ValidatorApiClient(api.base_url, api.stranger),
    }
    yield made
    for client in made.values():
        client.close()


@pytest.fixture
def open_round(api, clients) -> Round:
    api.close_rounds()
    return clients["owner"].create_round(100_000)


def test_service_routes(api, clients):
    public = clients["public"]
    assert public.health().status == "ok"
    assert public.ready() is True
    info = public.info()
    assert info.api_hotkey == api.api_hotkey
    assert info.blocks_until_reveal == api.settings.blocks_until_reveal


def test_full_round_through_the_client(api, clients, open_round):
    owner, miner, validator, public = (
        clients["owner"],
        clients["miner"],
        clients["validator"],
        clients["public"],
    )
    assert public.current_round() == open_round
    assert public.get_round(open_round.id) == open_round
    assert open_round.id in [r.id for r in public.list_rounds(limit=5).items]

    salt, payload, digest = material()
    committed = miner.commit(digest)
    assert committed.round_id == open_round.id
    assert committed.reveal_block == committed.commit_block + api.settings.blocks_until_reveal
    with pytest.raises(Conflict) as early:
        miner.reveal(committed.submission_id, salt, payload)
    assert early.value.code == "reveal_too_early"

    api.advance(api.settings.blocks_until_reveal)
    with pytest.raises(InvalidRequest) as wrong:
        miner.reveal(committed.submission_id, commitment.new_salt(), payload)
    assert (wrong.value.status, wrong.value.code) == (400, "commitment_mismatch")
    with pytest.raises(PermissionDenied) as theirs:
        clients["miner2"].reveal(committed.submission_id, salt, payload)
    assert theirs.value.code == "not_your_submission"

    revealed = miner.reveal(committed.submission_id, salt.hex(), payload)
    assert isinstance(revealed, Submission)
    assert (revealed.status, revealed.repo_url, revealed.commit_sha) == (
        "revealed",
        payload["repo_url"],
        payload["commit_sha"],
    )

    job = validator.claim_job()
    assert isinstance(job, Job) and job.submission_id == committed.submission_id
    assert job.repo_url == payload["repo_url"] and job.miner_hotkey == api.miner.ss58_address
    assert validator.claim_job() is None  # one job per submission on this profile
    assert validator.heartbeat(job.job_id).lease_expires_at >= job.lease_expires_at

    accepted = validator.post_result(job.job_id, PASS_RESULT)
    assert (accepted.verdict, accepted.submission_status) == ("pass", "scored")
    assert validator.post_result(job.job_id, PASS_RESULT) == accepted  # a lost answer, retried

    scored = public.get_submission(committed.submission_id)
    assert scored.status == "scored" and scored.score == pytest.approx(2.0)
    board = public.leaderboard(open_round.id)
    assert [e.submission_id for e in board.entries] == [committed.submission_id]
    assert board.entries[0].counted and board.entries[0].rank == 1
    assert public.leaderboard().round_id == open_round.id

    final = owner.finalize_round(open_round.id)
    assert final.status == "finalized" and final.winner_hotkey == api.miner.ss58_address
    assert public.current_round() is None
    weights = public.weights()
    assert weights.round_id == open_round.id
    assert sum(weights.weights) == pytest.approx(1.0)
    share = dict(zip(weights.hotkeys, weights.weights, strict=True))
    assert share[api.miner.ss58_address] == pytest.approx(api.settings.weight_split[0])


def test_refusals_are_typed_with_the_api_code(api, clients, open_round):
    _, _, digest = material()
    with pytest.raises(PermissionDenied) as unregistered:
        clients["stranger"].commit(digest)
    assert unregistered.value.code == "not_registered"
    with pytest.raises(PermissionDenied) as not_validator:
        clients["miner"].claim_job()
    assert not_validator.value.code == "not_validator"
    with pytest.raises(PermissionDenied) as not_owner:
        clients["miner"].create_round(10)
    assert not_owner.value.code == "not_owner"

    clients["miner"].commit(digest)
    with pytest.raises(Conflict) as duplicate:
        clients["miner2"].commit(digest)
    assert duplicate.value.code == "duplicate_commitment"

    with pytest.raises(NotFound) as missing:
        clients["public"].get_submission(987_654)
    assert missing.value.code == "submission_not_found"
    with pytest.raises(NotFound) as no_round:
        clients["public"].get_round(987_654)
    assert no_round.value.code == "round_not_found"
    with pytest.raises(NotFound) as no_job:
        clients["validator"].heartbeat(987_654)
    assert no_job.value.code == "job_not_found"
    assert no_job.value.request_id


def test_a_commitment_is_looked_up_by_its_hash(api, clients, open_round):
    salt, payload, digest = material()
    committed = clients["miner"].commit(digest)
    found = clients["public"].get_submission_by_commitment(digest.upper())
    assert isinstance(found, Submission)
    assert found == clients["public"].get_submission(committed.submission_id)
    assert (found.id, found.round_id, found.status) == (committed.submission_id, open_round.id, "committed")
    assert found.hotkey == api.miner.ss58_address and found.reveal_block == committed.reveal_block
    with pytest.raises(NotFound) as missing:
        clients["public"].get_submission_by_commitment(commitment.commitment_hash(salt, {**payload, "x": 1}))
    assert missing.value.code == "submission_not_found" and missing.value.request_id


def test_commit_without_open_round(api, clients):
    api.close_rounds()
    _, _, digest = material()
    with pytest.raises(Conflict) as refused:
        clients["miner"].commit(digest)
    assert refused.value.code == "no_open_round"


# --- production URL policy and retries: dedicated servers (SQLite) -------------------------------
def test_production_url_policy_through_the_client(start_api):
    api = start_api("sqlite", quasar_dev_mode=False)
    owner, miner = ValidatorApiClient(api.base_url, api.owner), ValidatorApiClient(api.base_url, api.miner)
    owner.create_round(1000)
    for bad in ("file:///tmp/fla", "http://github.com/m/fla", "https://127.0.0.1/m/fla"):
        salt, payload, digest = material(bad)
        committed = miner.commit(digest)
        api.advance(api.settings.blocks_until_reveal)
        with pytest.raises(InvalidRequest) as refused:
            miner.reveal(committed.submission_id, salt, payload)
        assert (refused.value.status, refused.value.code) == (422, "url_not_allowed"), bad


def _serve_later(app: Any, port: int, delay: float) -> tuple[threading.Thread, list[uvicorn.Server]]:
    """Start `app` on 127.0.0.1:port after `delay` seconds (the API comes back from a restart)."""
    holder: list[uvicorn.Server] = []

    def run() -> None:
        time.sleep(delay)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        holder.append(server)
        server.run()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, holder


def test_idempotent_calls_ride_out_a_restart_and_commit_does_not(start_api):
    api = start_api("sqlite")
    port = int(httpx.URL(api.base_url).port or 0)
    miner = ValidatorApiClient(api.base_url, api.miner, retries=6, backoff=0.2, max_backoff=1.0)
    ValidatorApiClient(api.base_url, api.owner).create_round(1000)
    miner.info()  # learn the API's hotkey while it is up
    api.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(api.base_url + "/health", timeout=2)

    # Not idempotent: one attempt, at once, and the error says nothing was sent.
    _, _, digest = material()
    started = time.monotonic()
    with pytest.raises(ApiUnavailable) as down:
        miner.commit(digest)
    assert time.monotonic() - started < 1.0
    assert down.value.code == "api_unavailable" and "safe to call again" in down.value.detail

    thread, holder = _serve_later(create_app(api.settings), port, delay=1.0)
    try:
        started = time.monotonic()
        current = miner.current_round()  # retried with backoff until the API is back
        assert current is not None and time.monotonic() - started >= 0.9
        assert miner.weights().round_id is None
        committed = miner.commit(digest)  # and the same commit now goes through, once
        assert miner.get_submission(committed.submission_id).status == "committed"
    finally:
        deadline = time.monotonic() + 10
        while not holder and time.monotonic() < deadline:
            time.sleep(0.05)
        if holder:
            holder[0].should_exit = True
        thread.join(timeout=15)


def test_idempotent_call_gives_up_with_api_unavailable():
    nobody_home = ValidatorApiClient("http://127.0.0.1:9", retries=2, backoff=0.05)
    started = time.monotonic()
    with pytest.raises(ApiUnavailable) as down:
        nobody_home.health()
    assert "gave up after 3 attempt" in down.value.detail
    assert time.monotonic() - started < 5
