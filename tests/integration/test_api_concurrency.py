"""Concurrency on a real database: one reveal among 20, no shared jobs among 10 validators, lapsed leases.

Required on PostgreSQL (row locks, SKIP LOCKED); SQLite runs the same cases (serialised writers).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.conftest import BACKENDS, ApiServer

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("backend", BACKENDS)
def test_twenty_concurrent_reveals_give_exactly_one(start_api, backend: str) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api(backend, evaluations_per_submission=2)
    api.new_round()
    committed, salt, payload = api.commit(api.miner)
    api.advance(api.settings.blocks_until_reveal or 0)
    target = f"/v1/submissions/{committed['submission_id']}/reveal"
    base_nonce = time.time_ns()

    def reveal(i: int) -> int:
        body = {"salt": salt, "payload": payload}
        return api.call(api.miner, "POST", target, body, nonce_ns=base_nonce + i).status_code

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(reveal, range(20)))
    assert statuses.count(200) == 1, statuses
    assert statuses.count(409) == 19, statuses
    with api.engine.connect() as conn:
        from sqlalchemy import text

        jobs = conn.execute(
            text("SELECT COUNT(*) FROM jobs WHERE submission_id = :s"), {"s": committed["submission_id"]}
        ).scalar_one()
    assert jobs == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_ten_validators_five_jobs_and_lapsed_lease(start_api, backend: str) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api(backend, validators=10, miners=5, job_lease_seconds=1)
    api.new_round()
    for miner in api.miners:
        api.commit_and_reveal(miner)
    base_nonce = time.time_ns()

    def claim(i: int) -> tuple[int, int | None]:
        response = api.call(api.validators[i], "POST", "/v1/jobs/claim", nonce_ns=base_nonce + i)
        return response.status_code, response.json()["job_id"] if response.status_code == 200 else None

    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(claim, range(10)))
    job_ids = [job for status, job in outcomes if status == 200]
    assert len(job_ids) == 5 and len(set(job_ids)) == 5, outcomes
    assert [status for status, _ in outcomes].count(204) == 5, outcomes

    # Leases of one second lapse; a validator without a job now gets one of them back.
    time.sleep(1.3)
    holders = {job: i for i, (status, job) in enumerate(outcomes) if status == 200}
    idle = next(i for i, (status, _) in enumerate(outcomes) if status == 204)
    again = api.call(api.validators[idle], "POST", "/v1/jobs/claim")
    assert again.status_code == 200, again.text
    job_id = again.json()["job_id"]
    assert job_id in holders
    # The old holder lost it: its heartbeat and result are refused.
    old = api.validators[holders[job_id]]
    refused = api.call(old, "POST", f"/v1/jobs/{job_id}/heartbeat")
    assert refused.status_code == 403 and refused.json()["code"] == "not_your_job"
    # It can go on with another lapsed job (oldest first), never the one now leased again.
    back = api.call(old, "POST", "/v1/jobs/claim")
    assert back.status_code == 200 and back.json()["job_id"] in holders and back.json()["job_id"] != job_id


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_validator_claiming_concurrently_gets_one_job_per_submission(start_api, backend: str) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api(backend, miners=2, evaluations_per_submission=3)
    api.new_round()
    submissions = {api.commit_and_reveal(miner)["id"] for miner in api.miners}
    validator = api.validators[0]
    base_nonce = time.time_ns()

    def claim(i: int) -> tuple[int, int | None]:
        response = api.call(validator, "POST", "/v1/jobs/claim", nonce_ns=base_nonce + i)
        return response.status_code, response.json()["submission_id"] if response.status_code == 200 else None

    # Six claims at once race for six jobs; the validator may hold only one job of each submission.
    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(claim, range(6)))
    claimed = [sub for status, sub in outcomes if status == 200]
    assert sorted(claimed) == sorted(submissions), outcomes
    assert [status for status, _ in outcomes].count(204) == 4, outcomes
    with api.engine.connect() as conn:
        from sqlalchemy import text

        held = conn.execute(
            text(
                "SELECT submission_id, COUNT(*) FROM jobs WHERE validator_hotkey = :v GROUP BY submission_id"
            ),
            {"v": validator.ss58_address},
        ).all()
    assert sorted(held) == sorted((sub, 1) for sub in submissions)
