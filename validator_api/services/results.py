"""Evaluation results: a validator's verdict on the job it holds, recorded once, and the round's evaluator pin.

A result is refused (and nothing written) for a submission its validator may not judge, a round
already finalized, a job it does not hold, or an evaluator other than the one the round is judged
by; a retry of a result already taken gets the same answer. An ``error`` hands the job to another
validator until MAX_JOB_ATTEMPTS. Every accepted result recomputes its submission's standing
(`services.submission_scores`).
"""

from __future__ import annotations

import hashlib
import json
import logging

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from quasar import schemas
from quasar.config import Settings
from quasar.reasons import REASON_SANDBOX_UNAVAILABLE
from validator_api import models
from validator_api.errors import ApiError
from validator_api.models import ROUNDS, utcnow
from validator_api.services.common import write_transaction
from validator_api.services.jobs import held_job, require_holder
from validator_api.services.submission_scores import refresh_round_baseline, refresh_submission

log = logging.getLogger("validator_api.jobs")


def _fingerprint(result: schemas.JobResult) -> str:
    canonical = json.dumps(result.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def post_result(
    session: Session, job_id: int, *, validator: str, result: schemas.JobResult, settings: Settings,
    conflicted: frozenset[str],
) -> schemas.JobResultAccepted:  # fmt: skip
    fingerprint = _fingerprint(result)
    with write_transaction(session):
        job = held_job(session, job_id, validator)
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
        require_holder(job, validator)
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
