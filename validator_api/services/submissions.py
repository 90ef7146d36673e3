"""Commit–reveal: record a commitment, accept its reveal inside the window, expire the unrevealed.

Commit and reveal are the busiest signed writes, so they are Core statements on the connection
whose transaction also holds the request's nonce (`validator_api.signed`), with as few round trips
as the checks allow. A reveal turns a submission into EVALUATIONS_PER_SUBMISSION jobs in the same
transaction. Its state change is a conditional UPDATE (`status = 'committed'`), so of any number of
concurrent reveals of one commitment exactly one succeeds, on any backend and any number of replicas.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, bindparam, func, insert, select, text, update
from sqlalchemy.orm import Session

from quasar import schemas
from quasar.config import Settings
from quasar.reasons import REASON_NOT_REVEALED
from quasar.urlpolicy import UrlNotAllowed, check_url
from validator_api import models
from validator_api.db import insert_unless_exists
from validator_api.errors import ApiError
from validator_api.models import JOBS, ROUNDS, SUBMISSIONS
from validator_api.services.common import is_postgres, submission_out, write_transaction

log = logging.getLogger("validator_api.submissions")

# The statements of commit and reveal, built once (see `insert_unless_exists`).
_OPEN_ROUND = select(ROUNDS.c.id, ROUNDS.c.end_block).where(ROUNDS.c.status == "open")
_SUBMISSION = (
    select(SUBMISSIONS, ROUNDS.c.end_block.label("round_end_block"))
    .join(ROUNDS, ROUNDS.c.id == SUBMISSIONS.c.round_id)
    .where(SUBMISSIONS.c.id == bindparam("submission_id"))
)
_REVEAL = (
    update(SUBMISSIONS)
    .where(SUBMISSIONS.c.id == bindparam("submission_id"), SUBMISSIONS.c.status == "committed")
    .values(
        status="revealed",
        revealed_block=bindparam("new_revealed_block"),
        repo_url=bindparam("new_repo_url"),
        commit_sha=bindparam("new_commit_sha"),
        inference_url=bindparam("new_inference_url"),
    )
    .returning(*SUBMISSIONS.c)
)
_QUEUE_JOBS = insert(JOBS)


def _not_found(submission_id: int) -> ApiError:
    return ApiError(404, "submission_not_found", f"no submission with id {submission_id}")


def get_submission(session: Session, submission_id: int) -> models.Submission:
    row = session.get(models.Submission, submission_id)
    if row is None:
        raise _not_found(submission_id)
    return row


def submission_by_commitment(session: Session, commitment_hash: str) -> models.Submission:
    """The submission whose commitment is ``commitment_hash`` (unique), or 404 ``submission_not_found``."""
    row = session.scalar(
        select(models.Submission).where(models.Submission.commitment_hash == commitment_hash)
    )
    if row is None:
        raise ApiError(404, "submission_not_found", f"no submission with commitment hash {commitment_hash}")
    return row


def submission_results(session: Session, submission_id: int) -> list[schemas.ValidatorResult]:
    get_submission(session, submission_id)
    rows = session.scalars(
        select(models.Result).where(models.Result.submission_id == submission_id).order_by(models.Result.id)
    ).all()
    return [schemas.ValidatorResult.model_validate(row, from_attributes=True) for row in rows]


def _duplicate_commitment() -> ApiError:
    return ApiError(
        409, "duplicate_commitment", "this commitment hash was already submitted; commit a fresh salt"
    )


def _check_commit_limit(connection: Connection, *, hotkey: str, round_id: int, limit: int) -> None:
    """409 `commit_limit_reached` once `hotkey` holds MAX_COMMITS_PER_ROUND commitments in the round."""
    if limit <= 0:
        return
    if is_postgres(connection):
        # Serialise one hotkey's commits (not everyone's) so two concurrent commits cannot both
        # count limit-1 and pass; SQLite's BEGIN IMMEDIATE already serialises every writer.
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"commit:{hotkey}"})
    held = connection.scalar(
        select(func.count())
        .select_from(SUBMISSIONS)
        .where(SUBMISSIONS.c.round_id == round_id, SUBMISSIONS.c.hotkey == hotkey)
    )
    if held is not None and held >= limit:
        raise ApiError(
            409,
            "commit_limit_reached",
            f"hotkey {hotkey} already made {held} commitments in round {round_id} "
            f"(MAX_COMMITS_PER_ROUND={limit}); reveal one of them or wait for the next round",
        )


def commit(
    connection: Connection, *, hotkey: str, commitment_hash: str, block: int, settings: Settings
) -> schemas.CommitResponse:
    """Record a commitment in the open round (run inside the caller's transaction)."""
    assert settings.blocks_until_reveal is not None and settings.reveal_window_blocks is not None
    current = connection.execute(_OPEN_ROUND).first()
    if current is None or block >= current.end_block:
        raise ApiError(
            409,
            "no_open_round",
            "no round is open for commitments right now; check GET /v1/rounds/current and retry "
            "when the next round opens",
        )
    _check_commit_limit(connection, hotkey=hotkey, round_id=current.id, limit=settings.max_commits_per_round)
    reveal_block = block + settings.blocks_until_reveal
    if reveal_block >= current.end_block:
        # Its reveal could only come after the round ended, when nothing is evaluated any more.
        raise ApiError(
            409,
            "commit_too_late",
            f"a commitment now could be revealed only at block {reveal_block}, after round {current.id} "
            f"ends at block {current.end_block} (BLOCKS_UNTIL_REVEAL={settings.blocks_until_reveal}); "
            "commit in the next round",
        )
    # The window closes with the round at the latest, so the deadline a miner is told is the real one.
    reveal_deadline_block = min(reveal_block + settings.reveal_window_blocks, current.end_block - 1)
    # The unique commitment hash decides a duplicate, concurrent ones included: no row comes back.
    submission_id = connection.scalar(
        insert_unless_exists(SUBMISSIONS, connection.dialect.name, "id"),
        {
            "round_id": current.id,
            "hotkey": hotkey,
            "commitment_hash": commitment_hash,
            "status": "committed",
            "commit_block": block,
            "reveal_block": reveal_block,
            "reveal_deadline_block": reveal_deadline_block,
        },
    )
    if submission_id is None:
        raise _duplicate_commitment()
    log.info("commitment %s by %s in round %s at block %s", submission_id, hotkey, current.id, block)
    return schemas.CommitResponse(
        submission_id=submission_id,
        round_id=current.id,
        commit_block=block,
        reveal_block=reveal_block,
        reveal_deadline_block=reveal_deadline_block,
    )


def _checked_url(url: str, *, kind: str, field: str, settings: Settings) -> str:
    try:
        return check_url(
            url,
            dev_mode=settings.dev_mode,
            allowed_hosts=settings.allowed_repo_hosts,
            kind=kind,  # type: ignore[arg-type]
        )
    except UrlNotAllowed as exc:
        raise ApiError(422, "url_not_allowed", f"payload.{field}: {exc.detail} ({exc.code})") from None


def reveal(
    connection: Connection,
    submission_id: int,
    *,
    hotkey: str,
    request: schemas.RevealRequest,
    block: int,
    settings: Settings,
) -> schemas.Submission:
    """Accept the reveal of a commitment and queue its jobs (run inside the caller's transaction)."""
    sub = connection.execute(_SUBMISSION, {"submission_id": submission_id}).first()
    if sub is None:
        raise _not_found(submission_id)
    if sub.hotkey != hotkey:
        raise ApiError(
            403, "not_your_submission", f"submission {submission_id} was committed by another hotkey"
        )
    if sub.status == "committed" and block >= sub.round_end_block:
        raise ApiError(
            409,
            "round_ended",
            f"round {sub.round_id} ended at block {sub.round_end_block} (now {block}); a reveal after its "
            "end cannot be evaluated; commit again in the next round",
        )
    if sub.status == "expired" or (sub.status == "committed" and block > sub.reveal_deadline_block):
        raise ApiError(
            409,
            "reveal_window_closed",
            f"the reveal window closed at block {sub.reveal_deadline_block} (now {block}); commit again",
        )
    if sub.status != "committed":
        raise ApiError(
            409, "already_revealed", f"submission {submission_id} is already revealed ({sub.status})"
        )
    if block < sub.reveal_block:
        raise ApiError(
            409,
            "reveal_too_early",
            f"reveal opens at block {sub.reveal_block} (now {block}); retry in "
            f"{sub.reveal_block - block} block(s)",
        )
    if not request.payload.matches(sub.commitment_hash, request.salt):
        raise ApiError(
            400,
            "commitment_mismatch",
            "salt and payload do not reproduce the commitment hash; reveal exactly what you committed",
        )
    repo_url = _checked_url(request.payload.repo_url, kind="repo", field="repo_url", settings=settings)
    inference_url = None
    if request.payload.inference_url is not None:
        inference_url = _checked_url(
            request.payload.inference_url, kind="inference", field="inference_url", settings=settings
        )
    revealed = connection.execute(
        _REVEAL,
        {
            "submission_id": submission_id,
            "new_revealed_block": block,
            "new_repo_url": repo_url,
            "new_commit_sha": request.payload.commit_sha,
            "new_inference_url": inference_url,
        },
    ).first()
    if revealed is None:
        raise ApiError(
            409, "already_revealed", f"submission {submission_id} was revealed by a concurrent request"
        )
    assert settings.evaluations_per_submission is not None
    connection.execute(
        _QUEUE_JOBS,
        [
            {"submission_id": submission_id, "slot": slot, "status": "queued", "attempt": 1}
            for slot in range(settings.evaluations_per_submission)
        ],
    )
    log.info("revealed submission %s (%s @ %s)", submission_id, repo_url, request.payload.commit_sha)
    return submission_out(revealed)


def expire_overdue(session: Session, block: int) -> int:
    """Mark commitments whose reveal window has closed as expired; returns how many."""
    with write_transaction(session):
        result = session.execute(
            update(models.Submission)
            .where(models.Submission.status == "committed", models.Submission.reveal_deadline_block < block)
            .values(status="expired", reason=REASON_NOT_REVEALED)
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
