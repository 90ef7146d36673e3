"""A submission's standing from all its results: score and interval, verdicts, status, outliers, duplicates;
and the round's baseline from its results."""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from quasar.config import Settings
from quasar.reasons import REASON_DUPLICATE, REASON_UNEVALUABLE
from validator_api import models
from validator_api.services.common import median

log = logging.getLogger("validator_api.jobs")


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
