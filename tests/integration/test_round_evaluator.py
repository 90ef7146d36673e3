"""A round only combines results of one evaluator version and one baseline: the pair its first
accepted result naming both carried (`services.results.require_round_evaluator`). Through the real API,
with real sr25519 keys, on SQLite and PostgreSQL; and the migration that adds the pair to the rounds table."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from quasar.client import ValidatorApiClient
from quasar.schemas import JobResult
from quasar.validator.posting import ResultSpool, post_result
from tests.integration.conftest import BACKENDS, ApiServer
from validator_api.db import make_engine
from validator_api.migrate import upgrade

pytestmark = pytest.mark.timeout(180)

NEW, OLD = "1.2.0", "1.1.0"
BASELINE, OTHER_BASELINE = "ab" * 32, "cd" * 32


def _pass(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "verdict": "pass", "reason": "ok", "median_ms": 1.0, "baseline_ms": 2.0, "max_rel_error": 1e-3,
    }  # fmt: skip
    body.update(extra)
    return body


def _claim(api: ApiServer, validator: Any) -> dict[str, Any]:
    response = api.call(validator, "POST", "/v1/jobs/claim")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _post(api: ApiServer, validator: Any, job: dict[str, Any], body: dict[str, Any]) -> Any:
    return api.call(validator, "POST", f"/v1/jobs/{job['job_id']}/result", body)


def _pin(api: ApiServer, round_id: int) -> tuple[str | None, str | None]:
    shown = api.get(f"/v1/rounds/{round_id}").json()
    return shown["evaluator_version"], shown["baseline_id"]


def _refused_as_mismatch(answer: Any) -> str:
    assert answer.status_code == 409 and answer.json()["code"] == "evaluator_mismatch", answer.text
    return str(answer.json()["detail"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_first_result_pins_the_round_and_other_evaluators_are_refused(start_api, backend: str) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api(backend, evaluations_per_submission=3)
    rnd = api.new_round()
    assert (rnd["evaluator_version"], rnd["baseline_id"]) == (None, None)
    sub = api.commit_and_reveal()
    first, second, third = api.validators
    jobs = {v.ss58_address: _claim(api, v) for v in (first, second, third)}

    pinned = _post(api, first, jobs[first.ss58_address], _pass(evaluator_version=NEW, baseline_id=BASELINE))
    assert pinned.status_code == 200, pinned.text
    # Every public view of the round shows the pair.
    assert _pin(api, rnd["id"]) == (NEW, BASELINE)
    current = api.get("/v1/rounds/current").json()
    assert (current["evaluator_version"], current["baseline_id"]) == (NEW, BASELINE)
    listed = api.get("/v1/rounds").json()["items"][0]
    assert (listed["evaluator_version"], listed["baseline_id"]) == (NEW, BASELINE)

    # Another evaluator version, another baseline, or neither named: refused, and nothing is written.
    before = api.snapshot()
    job = jobs[second.ss58_address]
    detail = _refused_as_mismatch(_post(api, second, job, _pass(evaluator_version=OLD, baseline_id=BASELINE)))
    assert NEW in detail and OLD in detail and "next round" in detail and "\n" not in detail
    _refused_as_mismatch(_post(api, second, job, _pass(evaluator_version=NEW, baseline_id=OTHER_BASELINE)))
    _refused_as_mismatch(_post(api, third, jobs[third.ss58_address], _pass()))
    _refused_as_mismatch(_post(api, third, jobs[third.ss58_address], _pass(evaluator_version=NEW)))
    assert api.snapshot() == before

    # The job is still held, so the same validator, once on the round's evaluator, is accepted.
    same = _post(api, second, job, _pass(evaluator_version=NEW, baseline_id=BASELINE))
    assert same.status_code == 200, same.text
    results = api.get(f"/v1/submissions/{sub['id']}/results").json()
    assert [(r["validator_hotkey"], r["evaluator_version"]) for r in results] == [
        (first.ss58_address, NEW),
        (second.ss58_address, NEW),
    ]
    assert _pin(api, rnd["id"]) == (NEW, BASELINE)

    # The next round starts unpinned: any evaluator may be the first again.
    following = api.new_round()
    assert (following["evaluator_version"], following["baseline_id"]) == (None, None)
    assert _pin(api, rnd["id"]) == (NEW, BASELINE)  # the finalized round keeps its pair
    api.commit_and_reveal(api.miners[1])
    again = _post(api, third, _claim(api, third), _pass(evaluator_version=OLD, baseline_id=OTHER_BASELINE))
    assert again.status_code == 200, again.text
    assert _pin(api, following["id"]) == (OLD, OTHER_BASELINE)


@pytest.mark.parametrize("backend", BACKENDS)
def test_results_naming_no_evaluator_are_accepted_until_the_round_is_pinned(start_api, backend: str) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api(backend, validators=4, evaluations_per_submission=3)
    rnd = api.new_round()
    api.commit_and_reveal()
    first, second, third, fourth = api.validators
    jobs = {v.ss58_address: _claim(api, v) for v in (first, second, third)}

    # An error is never combined: it pins nothing, whatever it names, and hands the job on.
    error = {
        "verdict": "error",
        "reason": "validator_error",
        "evaluator_version": OLD,
        "baseline_id": BASELINE,
    }
    errored = _post(api, first, jobs[first.ss58_address], error)
    assert errored.status_code == 200 and errored.json()["requeued"], errored.text
    assert _post(api, second, jobs[second.ss58_address], _pass()).status_code == 200
    # A version without a baseline pins nothing either.
    assert _post(api, third, jobs[third.ss58_address], _pass(evaluator_version=OLD)).status_code == 200
    assert _pin(api, rnd["id"]) == (None, None)
    # The first result naming both pins the round, on the job the error handed on.
    pinned = _post(api, fourth, _claim(api, fourth), _pass(evaluator_version=NEW, baseline_id=BASELINE))
    assert pinned.status_code == 200, pinned.text
    assert _pin(api, rnd["id"]) == (NEW, BASELINE)

    # Once pinned, an error naming no evaluator (the validator's own trouble) is still taken.
    api.commit_and_reveal(api.miners[1])
    bare = _post(api, first, _claim(api, first), {"verdict": "error", "reason": "sandbox_unavailable"})
    assert bare.status_code == 200 and bare.json()["requeued"], bare.text
    assert _pin(api, rnd["id"]) == (NEW, BASELINE)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_first_results_at_once_pin_one_pair(start_api, backend: str) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api(backend, evaluations_per_submission=2)
    rnd = api.new_round()
    api.commit_and_reveal()
    first, second = api.validators[:2]
    posts = [
        (first, _claim(api, first), _pass(evaluator_version=NEW, baseline_id=BASELINE)),
        (second, _claim(api, second), _pass(evaluator_version=OLD, baseline_id=OTHER_BASELINE)),
    ]
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda p: _post(api, *p), posts))
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    winner = next(body for (_, _, body), a in zip(posts, answers, strict=True) if a.status_code == 200)
    assert _pin(api, rnd["id"]) == (winner["evaluator_version"], winner["baseline_id"])
    with api.engine.connect() as conn:
        versions = conn.execute(text("SELECT evaluator_version FROM results")).scalars().all()
    assert versions == [winner["evaluator_version"]]


def test_the_validator_gives_up_on_a_mismatched_result_with_one_warning(
    start_api, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api("sqlite", evaluations_per_submission=2)
    api.new_round()
    api.commit_and_reveal()
    first, second = api.validators[:2]
    assert (
        _post(api, first, _claim(api, first), _pass(evaluator_version=NEW, baseline_id=BASELINE)).status_code
        == 200
    )
    spool = ResultSpool(tmp_path / "results")
    with ValidatorApiClient(api.base_url, second) as client:
        job = client.claim_job()
        assert job is not None
        result = JobResult.model_validate(_pass(evaluator_version=OLD, baseline_id=BASELINE))
        with caplog.at_level(logging.WARNING, logger="quasar.validator.posting"):
            outcome = post_result(client, job.job_id, result, spool=spool, patience_s=30.0, retry_s=0.1)
    assert outcome.status == "refused" and "evaluator_mismatch" in outcome.detail
    assert spool.pending() == []  # refused for good: it leaves the spool, it is not posted again
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "evaluator_mismatch" in warnings[0] and NEW in warnings[0], warnings


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrading_from_0005_keeps_rounds_and_leaves_them_unpinned(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    else:
        url = request.getfixturevalue("pg_databases").create()
    assert upgrade(url, "0005") == "0005"
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO rounds (id, status, start_block, end_block, target_shape, baseline_ms, created_at) "
                    "VALUES (7, 'open', 10, 110, :shape, 1.5, :at)"
                ),
                {"shape": '{"seq_len": 1024}', "at": "2025-01-01 00:00:00"},
            )
        assert upgrade(url) == "0006"
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT id, status, end_block, baseline_ms, evaluator_version, baseline_id FROM rounds")
            ).one()
    finally:
        engine.dispose()
    assert tuple(row) == (7, "open", 110, 1.5, None, None)
