"""Evaluation jobs: claim, heartbeat, and results that score submissions.

A claim takes a lapsed lease if there is one, else the oldest queued job. On PostgreSQL it locks
the chosen row with `FOR UPDATE SKIP LOCKED`, so concurrent validators each get a different job
without waiting; SQLite serialises every writer (`BEGIN IMMEDIATE`). `job_assignments` (unique
submission + validator) makes the database itself refuse a second job of one submission to one
validator. A lapsed lease needs no sweeper: a claimed job whose lease has expired is simply
claimable again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, bindparam, func, select, update
from sqlalchemy.orm import Session

from quasar import schemas
from quasar.config import Settings
from quasar.reasons import REASON_DUPLICATE, REASON_SANDBOX_UNAVAILABLE, REASON_UNEVALUABLE
from validator_api import models
from validator_api.db import constant, insert_unless_exists
from validator_api.errors import ApiError
from validator_api.models import ASSIGNMENTS, JOBS, RESULTS, ROUNDS, SUBMISSIONS, utcnow
from validator_api.services.common import is_postgres, median, write_transaction

log = logging.getLogger("validator_api.jobs")


def claim(
    connection: Connection, *, validator: str, settings: Settings, conflicted: frozenset[str]
) -> schemas.Job | None:
    """The next job this validator may take (`_candidate_queries`), now leased to it; None if none.

    ``conflicted`` are the miner hotkeys it may not judge (`auth.conflicted_hotkeys`): never its own
    submission. Runs inside the caller's transaction (`validator_api.signed`) as Core statements:
    claims are the busiest validator write.
    """
    # A submission whose other job a concurrent claim of this same validator holds is skipped, not
    # retried: retrying it (its next job) waited on that claim again, and a burst of one validator's
    # claims answered "nothing to do" while jobs were still claimable. Each pass skips one more
    # submission, so this ends when the candidates do.
    skipped: set[int] = set()
    while True:
        try:
            return _claim_once(connection, validator=validator, settings=settings, conflicted=conflicted,
                               skipped=skipped)  # fmt: skip
        except _TakenBySibling as taken:
            skipped.add(taken.submission_id)


class _TakenBySibling(Exception):
    """A concurrent claim by the same validator holds another job of the candidate's submission."""

    def __init__(self, submission_id: int) -> None:
        super().__init__(submission_id)
        self.submission_id = submission_id


@functools.cache
def _candidate_queries(dialect: str) -> tuple[Select[Any], Select[Any]]:
    """The two lookups of a claim: a lapsed lease first (it has waited longest), else the oldest queued job.

    Each reads the jobs table alone, in the order of its own index ((status, lease_expires_at),
    then (status, id)), and checks every other condition per row in a scalar subquery, which
    PostgreSQL never turns into a join. As joins, the planner was free to start from the round's
    submissions instead: with the statistics of a table that has just filled up (a burst of
    reveals), that plan took 1.8 s per claim. The constants are in the SQL text (`constant`), so
    PostgreSQL plans each lookup once; the statements are built once per dialect, with the
    validator and the time as parameters.
    """
    J, S, R, A, X = JOBS, SUBMISSIONS, ROUNDS, ASSIGNMENTS, RESULTS
    validator = bindparam("validator", type_=A.c.validator_hotkey.type)
    conflicted = bindparam("conflicted", expanding=True, type_=S.c.hotkey.type)
    skipped = bindparam("skipped", expanding=True, type_=J.c.submission_id.type)

    def one_row_if(query: Select[Any]) -> ColumnElement[bool]:
        return query.limit(constant(1)).scalar_subquery().is_not(None)

    def no_row_if(query: Select[Any]) -> ColumnElement[bool]:
        return query.limit(constant(1)).scalar_subquery().is_(None)

    base = (
        select(J.c.id, J.c.submission_id, J.c.attempt)
        .where(
            # its submission is still evaluated, in the open round
            one_row_if(
                select(constant(1))
                .select_from(S.join(R, R.c.id == S.c.round_id))
                .where(
                    S.c.id == J.c.submission_id,
                    S.c.status.in_([constant(s) for s in ("revealed", "evaluating", "scored")]),
                    R.c.status == constant("open"),
                    # never a submission of its own (or of its coldkey)
                    S.c.hotkey.not_in(conflicted),
                )
            ),
            J.c.submission_id.not_in(skipped),
            # never a second job of one submission (a lapsed job of its own may come back)
            no_row_if(
                select(constant(1)).where(
                    A.c.submission_id == J.c.submission_id,
                    A.c.validator_hotkey == validator,
                    A.c.job_id != J.c.id,
                )
            ),
            # never a job it already reported on (an `error` goes to someone else)
            no_row_if(select(constant(1)).where(X.c.job_id == J.c.id, X.c.validator_hotkey == validator)),
        )
        .limit(constant(1))
    )
    lapsed = base.where(
        J.c.status == constant("claimed"),
        J.c.lease_expires_at < bindparam("now", type_=J.c.lease_expires_at.type),
    ).order_by(J.c.lease_expires_at)
    queued = base.where(J.c.status == constant("queued")).order_by(J.c.id)
    if dialect == "postgresql":
        # The row stays locked until commit, and other claims skip it instead of waiting.
        lapsed = lapsed.with_for_update(of=J, skip_locked=True)
        queued = queued.with_for_update(of=J, skip_locked=True)
    return lapsed, queued


_ASSIGNED_JOB = select(ASSIGNMENTS.c.job_id).where(
    ASSIGNMENTS.c.submission_id == bindparam("submission_id"),
    ASSIGNMENTS.c.validator_hotkey == bindparam("validator_hotkey"),
)
_TAKE_JOB = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("job_id"))
    .values(
        status="claimed",
        validator_hotkey=bindparam("holder"),
        lease_expires_at=bindparam("lease_until"),
        claimed_at=bindparam("at"),
    )
)
_START_EVALUATING = (
    update(SUBMISSIONS)
    .where(SUBMISSIONS.c.id == bindparam("submission_id"), SUBMISSIONS.c.status == "revealed")
    .values(status="evaluating")
)
_JOB_DETAILS = (
    select(
        SUBMISSIONS.c.round_id,
        SUBMISSIONS.c.hotkey,
        SUBMISSIONS.c.repo_url,
        SUBMISSIONS.c.commit_sha,
        SUBMISSIONS.c.inference_url,
        ROUNDS.c.target_shape,
    )
    .join(ROUNDS, ROUNDS.c.id == SUBMISSIONS.c.round_id)
    .where(SUBMISSIONS.c.id == bindparam("submission_id"))
)


def _claim_once(
    connection: Connection,
    *,
    validator: str,
    settings: Settings,
    conflicted: frozenset[str],
    skipped: set[int],
) -> schemas.Job | None:
    now = utcnow()
    job = None
    params = {
        "validator": validator,
        "now": now,
        "conflicted": sorted(conflicted),
        "skipped": sorted(skipped),
    }
    for query in _candidate_queries(connection.dialect.name):
        job = connection.execute(query, params).first()
        if job is not None:
            break
    if job is None:
        return None
    # The unique (submission, validator) assignment is taken first: a concurrent claim by the same
    # validator either already holds it (this attempt writes nothing and tries again) or waits.
    assignment = {"submission_id": job.submission_id, "validator_hotkey": validator}
    inserted = connection.scalar(
        insert_unless_exists(ASSIGNMENTS, connection.dialect.name, "job_id"), {**assignment, "job_id": job.id}
    )
    # Already there: for this job (its own lapsed lease, fine) or for a sibling (try again).
    if inserted is None and connection.scalar(_ASSIGNED_JOB, assignment) != job.id:
        raise _TakenBySibling(job.submission_id)
    lease_expires = now + timedelta(seconds=settings.job_lease_seconds)
    # The row is locked (PostgreSQL) or every writer is serialised (SQLite), so it is still claimable.
    connection.execute(
        _TAKE_JOB, {"job_id": job.id, "holder": validator, "lease_until": lease_expires, "at": now}
    )
    connection.execute(_START_EVALUATING, {"submission_id": job.submission_id})
    sub = connection.execute(_JOB_DETAILS, {"submission_id": job.submission_id}).one()
    log.info(
        "job %s (submission %s, attempt %s) claimed by %s", job.id, job.submission_id, job.attempt, validator
    )
    return schemas.Job(
        job_id=job.id,
        submission_id=job.submission_id,
        round_id=sub.round_id,
        repo_url=sub.repo_url,
        commit_sha=sub.commit_sha,
        inference_url=sub.inference_url,
        miner_hotkey=sub.hotkey,
        target_shape=schemas.TargetShape.model_validate(sub.target_shape),
        attempt=job.attempt,
        lease_expires_at=lease_expires,
        lease_seconds=settings.job_lease_seconds,
        win_margin=settings.win_margin,
    )


def _held_job(session: Session, job_id: int, validator: str) -> models.Job:
    query = select(models.Job).where(models.Job.id == job_id)
    if is_postgres(session):
        query = query.with_for_update()
    job = session.scalars(query).first()
    if job is None:
        raise ApiError(404, "job_not_found", f"no job with id {job_id}")
    return job


def _require_holder(job: models.Job, validator: str) -> None:
    if job.status == "claimed" and job.validator_hotkey != validator:
        raise ApiError(403, "not_your_job", f"job {job.id} is held by another validator")
    if job.status != "claimed":
        raise ApiError(
            409, "job_not_claimed", f"job {job.id} is {job.status}, not claimed by you; claim a job first"
        )


def heartbeat(session: Session, job_id: int, *, validator: str, settings: Settings) -> schemas.Heartbeat:
    with write_transaction(session):
        job = _held_job(session, job_id, validator)
        _require_holder(job, validator)
        job.lease_expires_at = utcnow() + timedelta(seconds=settings.job_lease_seconds)
        out = schemas.Heartbeat(job_id=job.id, lease_expires_at=job.lease_expires_at)
    return out


def _fingerprint(result: schemas.JobResult) -> str:
    canonical = json.dumps(result.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def post_result(
    session: Session, job_id: int, *, validator: str, result: schemas.JobResult, settings: Settings,
    conflicted: frozenset[str],
) -> schemas.JobResultAccepted:  # fmt: skip
    fingerprint = _fingerprint(result)
    with write_transaction(session):
        job = _held_job(session, job_id, validator)
        previous = session.scalars(
            select(models.Result)
            .where(models.Result.job_id == job_id, models.Result.validator_hotkey == validator)
            .order_by(models.Result.id.desc())
        ).first()
        if previous is not None and previous.fingerprint == fingerprint:
            # A retry of a result already taken (its answer was lost): the same answer again.
            return schemas.JobResultAccepted.model_validate(previous.response)
        sub = session.get(models.Submission, job.submission_id)
        assert sub is not None
        if sub.hotkey in conflicted:
            # A claim never hands this out; a coldkey that became shared after the claim ends here.
            raise ApiError(
                403, "conflict_of_interest",
                f"submission {sub.id} is by {sub.hotkey}, your own hotkey or one of your coldkey's; "
                "a validator never judges its own submissions",
            )  # fmt: skip
        rnd = session.get(models.Round, sub.round_id)
        if rnd is not None and rnd.status != "open":
            raise ApiError(
                409, "round_finalized",
                f"round {rnd.id} was finalized at block {rnd.finalized_block} before this result came; "
                "it was not recorded",
            )  # fmt: skip
        if job.status == "done":
            if previous is not None:
                raise ApiError(
                    409,
                    "result_conflict",
                    f"job {job_id} already has your result ({previous.verdict}); it cannot change",
                )
            raise ApiError(403, "not_your_job", f"job {job_id} was done by another validator")
        _require_holder(job, validator)
        # The last refusal: once past it, the round may be pinned, in this same transaction.
        require_round_evaluator(session, sub.round_id, result)

        row = models.Result(
            job_id=job.id,
            submission_id=sub.id,
            validator_hotkey=validator,
            attempt=job.attempt,
            verdict=result.verdict,
            reason=result.reason,
            detail=result.detail,
            median_ms=result.median_ms,
            baseline_ms=result.baseline_ms,
            # Recomputed from the times the validator measured, never taken as posted.
            speedup=recomputed_speedup(result),
            speedup_ci_low=result.speedup_ci_low,
            speedup_ci_high=result.speedup_ci_high,
            inconclusive=result.inconclusive,
            evaluator_version=result.evaluator_version,
            baseline_id=result.baseline_id,
            max_rel_error=result.max_rel_error,
            peak_mem_mb=result.peak_mem_mb,
            kernel_tree_hash=result.kernel_tree_hash,
            sandbox=result.sandbox,
            logit_verdict=None if result.logit_check is None else result.logit_check.verdict,
            logit_check=None if result.logit_check is None else result.logit_check.model_dump(mode="json"),
            report=result.report,
            fingerprint=fingerprint,
            response={},
        )
        session.add(row)
        session.flush()  # the new row is counted by _counted_attempts
        requeued = False
        now = utcnow()
        if result.verdict == "error" and _counted_attempts(session, job) < settings.max_job_attempts:
            # The validator's own trouble: another validator gets the job.
            job.status, job.attempt, requeued = "queued", job.attempt + 1, True
            job.validator_hotkey, job.lease_expires_at, job.claimed_at = None, None, None
        else:
            job.status, job.finished_at = "done", now
        session.flush()
        refresh_submission(session, sub, settings)
        refresh_round_baseline(session, sub.round_id)
        answer = schemas.JobResultAccepted(
            job_id=job.id,
            submission_id=sub.id,
            verdict=result.verdict,
            submission_status=sub.status,  # type: ignore[arg-type]
            requeued=requeued,
        )
        row.response = answer.model_dump(mode="json")
    log.info(
        "job %s result %s/%s from %s -> submission %s %s",
        job_id,
        result.verdict,
        result.reason,
        validator,
        answer.submission_id,
        answer.submission_status,
    )
    return answer


def _round_evaluator(session: Session, round_id: int) -> tuple[str | None, str | None]:
    # A Core read, so it sees the row as it is now, not as the session first loaded it.
    pinned = session.execute(
        select(ROUNDS.c.evaluator_version, ROUNDS.c.baseline_id).where(ROUNDS.c.id == round_id)
    ).one()
    return pinned.evaluator_version, pinned.baseline_id


def require_round_evaluator(session: Session, round_id: int, result: schemas.JobResult) -> None:
    """A round only combines results of one evaluator version and one baseline: the pair its first
    accepted pass or fail naming both carried. That result pins the pair on the round (call this
    last, inside the result's transaction, so a refusal after it cannot leave a pin behind); once
    pinned, a pass or fail with another pair, or none, is refused: 409 ``evaluator_mismatch``,
    nothing written.

    An ``error`` neither pins nor is refused: it is never combined (no score, no baseline), only
    hands the job to another validator, and the validator's own error results name no evaluator.
    Race-safe: the pin is a conditional UPDATE (``evaluator_version IS NULL``), and the pair is read
    again after it, so of two first results posted at once the loser is judged against the winner's.
    Before any pin, a result naming neither is accepted as before."""
    if result.verdict not in ("pass", "fail"):
        return
    version, baseline = _round_evaluator(session, round_id)
    if version is None:
        if result.evaluator_version is None or result.baseline_id is None:
            return
        session.execute(
            update(ROUNDS)
            .where(ROUNDS.c.id == round_id, ROUNDS.c.evaluator_version.is_(None))
            .values(evaluator_version=result.evaluator_version, baseline_id=result.baseline_id)
        )
        version, baseline = _round_evaluator(session, round_id)
        if version == result.evaluator_version and baseline == result.baseline_id:
            log.info("round %s is judged by evaluator %s, baseline %s", round_id, version, baseline)
            return
    if (result.evaluator_version, result.baseline_id) != (version, baseline):
        posted = (
            f"evaluator {result.evaluator_version or '(none)'} against baseline {_short(result.baseline_id)}"
        )
        raise ApiError(
            409, "evaluator_mismatch",
            f"round {round_id} is judged by evaluator {version} against baseline {_short(baseline)}, "
            f"this result by {posted}; it was not recorded. Upgrade the validator to evaluator {version}, "
            "or wait for the next round",
        )  # fmt: skip


def _short(baseline_id: str | None) -> str:
    return "(none)" if baseline_id is None else baseline_id[:12]


def recomputed_speedup(result: schemas.JobResult) -> float | None:
    """The baseline's median time over the submission's: a posted ``speedup`` alone decides nothing."""
    if result.baseline_ms is None or result.median_ms is None:
        return None
    return result.baseline_ms / result.median_ms


def _counted_attempts(session: Session, job: models.Job) -> int:
    """Attempts that count toward MAX_JOB_ATTEMPTS: a validator that could not build its sandbox
    (``sandbox_unavailable``) never ran the submission, so that attempt does not count against it.
    Each validator reports on a job once, so such attempts are bounded by the validators."""
    uncounted = session.scalar(
        select(func.count())
        .select_from(models.Result)
        .where(models.Result.job_id == job.id, models.Result.reason == REASON_SANDBOX_UNAVAILABLE)
    )
    return job.attempt - int(uncounted or 0)


# --- submission state from its results ----------------------------------------------------------
def _base_status(session: Session, sub: models.Submission) -> tuple[str, str | None]:
    results = session.scalars(select(models.Result).where(models.Result.submission_id == sub.id)).all()
    decisive = [r for r in results if r.verdict in ("pass", "fail")]
    if decisive:
        passes = sum(r.verdict == "pass" for r in decisive)
        if passes > len(decisive) - passes:
            return "scored", None
        return "scored", next(r.reason for r in decisive if r.verdict == "fail")
    jobs = session.scalars(select(models.Job).where(models.Job.submission_id == sub.id)).all()
    if jobs and all(j.status == "done" for j in jobs):
        return "rejected", REASON_UNEVALUABLE
    if results or any(j.status != "queued" or j.attempt > 1 for j in jobs):
        return "evaluating", None
    return "revealed", None


def refresh_submission(session: Session, sub: models.Submission, settings: Settings) -> None:
    """Recompute a revealed submission's score, verdicts and status from all its results.

    Every number is a lower median over the validators' results (`common.median`), so no one
    validator lifts a score: with two results the lower one stands, with three or more one result
    cannot move it outside the others' range. How many validators judged it is kept
    (``evaluations``) for the quorum `scoring.is_counted` asks for."""
    results = session.scalars(
        select(models.Result).where(models.Result.submission_id == sub.id).order_by(models.Result.id)
    ).all()
    decisive = [r for r in results if r.verdict in ("pass", "fail")]
    passes = [r for r in decisive if r.verdict == "pass"]
    sub.evaluations = len({r.validator_hotkey for r in decisive})
    sub.correct = (len(passes) > len(decisive) - len(passes)) if decisive else None
    sub.score = median(r.speedup for r in passes)
    sub.score_ci_low = median(r.speedup_ci_low for r in passes)
    sub.score_ci_high = median(r.speedup_ci_high for r in passes)
    flagged = [r.inconclusive for r in passes if r.inconclusive is not None]
    sub.inconclusive = (sum(flagged) > len(flagged) - sum(flagged)) if flagged else None
    sub.median_ms = median(r.median_ms for r in passes)
    logit = [r.logit_verdict for r in passes if r.logit_verdict in ("pass", "fail")]
    sub.verified = (logit.count("pass") > logit.count("fail")) if logit else None
    _flag_outliers(decisive, settings.outlier_tolerance)
    if sub.kernel_tree_hash is None:
        sub.kernel_tree_hash = next((r.kernel_tree_hash for r in decisive if r.kernel_tree_hash), None)
    sub.sandbox = "; ".join(dict.fromkeys(r.sandbox for r in decisive if r.sandbox))[:512] or None
    if sub.status not in ("committed", "expired"):
        sub.status, sub.reason = _base_status(session, sub)
    session.flush()
    if sub.kernel_tree_hash is not None:
        _mark_duplicates(session, sub.kernel_tree_hash)


def _flag_outliers(decisive: list[models.Result], tolerance: float) -> None:
    """Mark each result that disagrees with at least two others on the same submission: a verdict
    against their unanimous one, or a speed-up further than ``tolerance`` (relative) from their
    median. A flag accuses no one by itself; it tells the owner where to look."""
    for result in decisive:
        others = [r for r in decisive if r.validator_hotkey != result.validator_hotkey]
        if len(others) < 2:
            result.outlier = None
            continue
        verdicts = {r.verdict for r in others}
        against = len(verdicts) == 1 and result.verdict not in verdicts
        typical = median(r.speedup for r in others if r.verdict == "pass")
        off = (
            result.verdict == "pass" and result.speedup is not None and typical is not None
            and abs(result.speedup / typical - 1.0) > tolerance
        )  # fmt: skip
        if (against or off) and not result.outlier:
            log.warning(
                "validator %s is an outlier on submission %s: %s, speed-up %s against the others' %s",
                result.validator_hotkey, result.submission_id, result.verdict, result.speedup, typical,
            )  # fmt: skip
        result.outlier = against or off


def _mark_duplicates(session: Session, tree_hash: str) -> None:
    """Of the submissions with one kernel tree, all but the earliest hotkey's are duplicates."""
    group = session.scalars(
        select(models.Submission)
        .where(
            models.Submission.kernel_tree_hash == tree_hash,
            models.Submission.status.not_in(("committed", "expired")),
        )
        .order_by(models.Submission.commit_block, models.Submission.id)
    ).all()
    if not group:
        return
    first = group[0]
    for sub in group:
        if sub.hotkey != first.hotkey:
            sub.duplicate_of, sub.status, sub.reason = first.id, "duplicate", REASON_DUPLICATE
        elif sub.status == "duplicate":
            sub.duplicate_of = None
            sub.status, sub.reason = _base_status(session, sub)
    session.flush()


def refresh_round_baseline(session: Session, round_id: int) -> None:
    values = session.scalars(
        select(models.Result.baseline_ms)
        .join(models.Submission, models.Submission.id == models.Result.submission_id)
        .where(models.Submission.round_id == round_id, models.Result.verdict.in_(("pass", "fail")))
    ).all()
    baseline = median(values)
    if baseline is not None:
        session.execute(
            update(models.Round)
            .where(models.Round.id == round_id, models.Round.status == "open")
            .values(baseline_ms=baseline)
            .execution_options(synchronize_session=False)
        )
