"""Evaluation jobs: claim and heartbeat (the lease); a held job's result is `services.results`'s work.

A claim takes a lapsed lease if there is one, else the oldest queued job. On PostgreSQL it locks
the chosen row with `FOR UPDATE SKIP LOCKED`, so concurrent validators each get a different job
without waiting; SQLite serialises every writer (`BEGIN IMMEDIATE`). `job_assignments` (unique
submission + validator) makes the database itself refuse a second job of one submission to one
validator. A lapsed lease needs no sweeper: a claimed job whose lease has expired is simply
claimable again.
"""

from __future__ import annotations

import functools
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, bindparam, select, update
from sqlalchemy.orm import Session

from quasar import schemas
from quasar.config import Settings
from validator_api import models
from validator_api.db import constant, insert_unless_exists
from validator_api.errors import ApiError
from validator_api.models import ASSIGNMENTS, JOBS, RESULTS, ROUNDS, SUBMISSIONS, utcnow
from validator_api.services.common import is_postgres, write_transaction

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


def held_job(session: Session, job_id: int, validator: str) -> models.Job:
    """Job ``job_id``, its row locked on PostgreSQL for the rest of the transaction; 404 if there is none."""
    query = select(models.Job).where(models.Job.id == job_id)
    if is_postgres(session):
        query = query.with_for_update()
    job = session.scalars(query).first()
    if job is None:
        raise ApiError(404, "job_not_found", f"no job with id {job_id}")
    return job


def require_holder(job: models.Job, validator: str) -> None:
    """403 or 409 unless ``validator`` holds ``job``'s live claim."""
    if job.status == "claimed" and job.validator_hotkey != validator:
        raise ApiError(403, "not_your_job", f"job {job.id} is held by another validator")
    if job.status != "claimed":
        raise ApiError(
            409, "job_not_claimed", f"job {job.id} is {job.status}, not claimed by you; claim a job first"
        )


def heartbeat(session: Session, job_id: int, *, validator: str, settings: Settings) -> schemas.Heartbeat:
    with write_transaction(session):
        job = held_job(session, job_id, validator)
        require_holder(job, validator)
        job.lease_expires_at = utcnow() + timedelta(seconds=settings.job_lease_seconds)
        out = schemas.Heartbeat(job_id=job.id, lease_expires_at=job.lease_expires_at)
    return out
