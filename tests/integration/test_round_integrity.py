"""Round integrity through the real API: no validator judges its own submission or decides one
alone, speed-ups are recomputed and combined so one result cannot lift them, outliers are flagged,
late commits have explicit outcomes, and a burst of one validator's claims never answers 204 while
jobs are claimable. SQLite and PostgreSQL."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import text

from tests.integration.conftest import BACKENDS, ApiServer, new_keypair

pytestmark = pytest.mark.timeout(180)


def _pass(baseline_ms: float, median_ms: float = 1.0, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "verdict": "pass", "reason": "ok", "median_ms": median_ms, "baseline_ms": baseline_ms,
        "speedup": baseline_ms / median_ms, "max_rel_error": 1e-3,
    }  # fmt: skip
    body.update(extra)
    return body


def _claim(api: ApiServer, validator: Any) -> dict[str, Any] | None:
    response = api.call(validator, "POST", "/v1/jobs/claim")
    assert response.status_code in (200, 204), response.text
    return None if response.status_code == 204 else dict(response.json())


def _entry(api: ApiServer, submission_id: int) -> dict[str, Any]:
    board = api.get("/v1/leaderboard").json()
    return next(e for e in board["entries"] if e["submission_id"] == submission_id)


def _wait_for_metagraph(api: ApiServer) -> None:
    time.sleep((api.settings.metagraph_ttl_seconds or 1.0) + 0.5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_validator_never_judges_a_submission_of_its_own_or_its_coldkey(start_api, backend: str) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api(backend)
    api.new_round()
    self_judge, other, sibling = api.validators
    # A validator hotkey is registered, so it may commit as a miner.
    own = api.commit_and_reveal(self_judge)
    assert _claim(api, self_judge) is None  # its own job is the only one: nothing for it
    # A miner of the same coldkey as a validator is that validator's interest too.
    coldkey = new_keypair().ss58_address
    api.chain.register(api.miners[0].ss58_address, "miner", coldkey=coldkey)
    api.chain.register(sibling.ss58_address, "validator", stake=1000.0, coldkey=coldkey)
    _wait_for_metagraph(api)
    kin = api.commit_and_reveal(api.miners[0])
    assert _claim(api, sibling)["submission_id"] == own["id"]  # type: ignore[index]
    assert _claim(api, sibling) is None  # only its coldkey's submission is left
    taken = _claim(api, other)
    assert taken is not None and taken["submission_id"] == kin["id"]

    # A coldkey shared after the claim: the result is refused, and nothing is written.
    api.chain.register(other.ss58_address, "validator", stake=1000.0, coldkey=coldkey)
    _wait_for_metagraph(api)
    before = api.snapshot()
    refused = api.call(other, "POST", f"/v1/jobs/{taken['job_id']}/result", _pass(4.0))
    assert refused.status_code == 403 and refused.json()["code"] == "conflict_of_interest", refused.text
    assert api.snapshot() == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_one_validator_decides_lifts_or_sinks_a_score(start_api, backend: str) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api(backend, evaluations_per_submission=3, win_margin=0.0)
    api.new_round()
    sub = api.commit_and_reveal(api.miners[0])
    liar, honest, third = api.validators
    jobs = {v.ss58_address: _claim(api, v) for v in (liar, honest)}

    # The liar posts a huge speed-up (and a "speedup" that its own times do not give).
    body = _pass(10_000.0, speedup=1e9)
    assert (
        api.call(liar, "POST", f"/v1/jobs/{jobs[liar.ss58_address]['job_id']}/result", body).status_code
        == 200
    )  # type: ignore[index]
    alone = _entry(api, sub["id"])
    # Two validators are at work in the round: one result does not decide.
    assert (alone["counted"], alone["evaluations"], alone["evaluations_required"]) == (False, 1, 2)

    assert (
        api.call(
            honest, "POST", f"/v1/jobs/{jobs[honest.ss58_address]['job_id']}/result", _pass(1.2, speedup=50.0)
        ).status_code
        == 200
    )  # type: ignore[index]
    both = _entry(api, sub["id"])
    # Of two, the lower stands: the liar cannot lift it, and the posted "speedup" was never used.
    assert both["counted"] and both["score"] == pytest.approx(1.2)

    job = _claim(api, third)
    assert job is not None
    assert api.call(third, "POST", f"/v1/jobs/{job['job_id']}/result", _pass(1.3)).status_code == 200
    three = _entry(api, sub["id"])
    assert three["score"] == pytest.approx(1.3) and three["evaluations"] == 3
    results = api.get(f"/v1/submissions/{sub['id']}/results").json()
    assert [(r["validator_hotkey"], r["speedup"], r["outlier"]) for r in results] == [
        (liar.ss58_address, pytest.approx(10_000.0), True),
        (honest.ss58_address, pytest.approx(1.2), False),
        (third.ss58_address, pytest.approx(1.3), False),
    ]
    assert api.get("/v1/submissions/999999/results").status_code == 404


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_commit_whose_reveal_falls_past_the_round_is_refused(start_api, backend: str) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api(backend)
    wait = api.settings.blocks_until_reveal or 0
    rnd = api.new_round(duration_blocks=4 * wait)
    committed, salt, payload = api.commit(api.miner)
    # The reveal window closes with the round, and the miner is told so.
    assert committed["reveal_deadline_block"] == rnd["end_block"] - 1

    api.advance(rnd["end_block"] - api.block() - wait)  # a reveal now would open exactly at the end
    late = api.call(api.miners[1], "POST", "/v1/submissions/commit", {"commitment_hash": "ab" * 32})
    assert late.status_code == 409 and late.json()["code"] == "commit_too_late", late.text
    assert "next round" in late.json()["detail"]

    api.advance(wait)  # the round's end block: a reveal would come too late to be evaluated
    revealed = api.call(
        api.miner,
        "POST",
        f"/v1/submissions/{committed['submission_id']}/reveal",
        {"salt": salt, "payload": payload},
    )
    assert revealed.status_code == 409 and revealed.json()["code"] == "round_ended", revealed.text


@pytest.mark.parametrize("backend", BACKENDS)
def test_finalizing_waits_for_evaluations_then_ends_what_is_left(start_api, backend: str) -> None:  # type: ignore[no-untyped-def]
    # One-second upkeep ticks; blocks move only when the test advances them.
    api: ApiServer = start_api(backend, upkeep=True, block_time_seconds=1.0, finalize_grace_blocks=10)
    first = api.new_round(duration_blocks=50)
    sub = api.commit_and_reveal()
    job = _claim(api, api.validator)
    assert job is not None
    api.advance(first["end_block"] - api.block())
    time.sleep(3)  # three upkeep ticks past the end block
    assert api.get(f"/v1/rounds/{first['id']}").json()["status"] == "open"  # its job is still held
    posted = api.call(api.validator, "POST", f"/v1/jobs/{job['job_id']}/result", _pass(2.0))
    assert posted.status_code == 200, posted.text
    _wait(lambda: api.get(f"/v1/rounds/{first['id']}").json()["status"] == "finalized", "finalize")
    assert api.get(f"/v1/submissions/{sub['id']}").json()["status"] == "scored"

    second = api.new_round(duration_blocks=50)
    stuck = api.commit_and_reveal()
    held = _claim(api, api.validator)
    assert held is not None
    api.advance(second["end_block"] + 10 - api.block())  # the end and the whole grace
    _wait(
        lambda: api.get(f"/v1/rounds/{second['id']}").json()["status"] == "finalized", "finalize after grace"
    )
    ended = api.get(f"/v1/submissions/{stuck['id']}").json()
    assert (ended["status"], ended["reason"]) == ("expired", "unevaluated")
    late = api.call(api.validator, "POST", f"/v1/jobs/{held['job_id']}/result", _pass(2.0))
    assert late.status_code == 409 and late.json()["code"] == "round_finalized", late.text


def _wait(condition: Any, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_burst_of_one_validators_claims_answers_204_only_when_nothing_is_left(
    start_api, backend: str
) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api(backend, evaluations_per_submission=3, max_commits_per_round=0)
    api.new_round()
    for i in range(25):
        api.commit_and_reveal(api.miners[i % len(api.miners)])
    base_nonce = time.time_ns()

    def claim(i: int) -> tuple[int, int | None]:
        response = api.call(api.validator, "POST", "/v1/jobs/claim", nonce_ns=base_nonce + i)
        return response.status_code, response.json()["submission_id"] if response.status_code == 200 else None

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(claim, range(20)))
    assert [status for status, _ in answers] == [200] * 20, answers
    assert len({sid for _, sid in answers}) == 20  # one job of each submission at most
    with api.engine.connect() as conn:
        held = conn.execute(text("SELECT COUNT(*) FROM jobs WHERE status = 'claimed'")).scalar_one()
    assert held == 20
