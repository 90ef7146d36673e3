"""Rounds: open, list, finalize (which fixes the round's weights), and the current weights."""

from __future__ import annotations

import logging

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from quasar import schemas
from quasar.chain import Metagraph
from quasar.config import Settings
from quasar.reasons import REASON_NOT_REVEALED, REASON_UNEVALUATED
from validator_api import models
from validator_api.errors import ApiError
from validator_api.models import utcnow
from validator_api.services.common import round_out, write_transaction
from validator_api.services.scoring import burn_only, compute_weights, round_validators

log = logging.getLogger("validator_api.rounds")


def default_target_shape(settings: Settings) -> schemas.TargetShape:
    return schemas.TargetShape(seq_len=settings.target_sequence_length)


def open_round(session: Session) -> models.Round | None:
    return session.scalars(select(models.Round).where(models.Round.status == "open")).first()


def shown_round(session: Session) -> models.Round | None:
    """The round public views show: the open one, else the latest."""
    return (
        open_round(session) or session.scalars(select(models.Round).order_by(models.Round.id.desc())).first()
    )


def get_round(session: Session, round_id: int) -> models.Round:
    row = session.get(models.Round, round_id)
    if row is None:
        raise ApiError(404, "round_not_found", f"no round with id {round_id}; GET /v1/rounds lists them")
    return row


def create_round(
    session: Session, *, start_block: int, duration_blocks: int, target_shape: schemas.TargetShape
) -> schemas.Round:
    """Open a round now; 409 `round_open` while another is open (the database enforces one)."""
    with write_transaction(session):
        current = open_round(session)
        if current is not None:
            raise ApiError(
                409,
                "round_open",
                f"round {current.id} is still open; finalize it first (POST /v1/rounds/{current.id}/finalize)",
            )
        row = models.Round(
            status="open",
            start_block=start_block,
            end_block=start_block + duration_blocks,
            target_shape=target_shape.model_dump(),
        )
        session.add(row)
        try:
            session.flush()
        except IntegrityError:
            raise ApiError(409, "round_open", "another round was opened at the same moment") from None
        out = round_out(row)
    log.info("opened round %s (blocks %s-%s)", out.id, out.start_block, out.end_block)
    return out


def list_rounds(session: Session, *, limit: int, offset: int) -> schemas.RoundPage:
    total = session.scalar(select(func.count()).select_from(models.Round)) or 0
    rows = session.scalars(select(models.Round).order_by(models.Round.id.desc()).limit(limit).offset(offset))
    return schemas.RoundPage(items=[round_out(r) for r in rows], total=total, limit=limit, offset=offset)


def current_round(session: Session) -> schemas.Round:
    row = open_round(session)
    if row is None:
        raise ApiError(404, "round_not_found", "no round is open right now; the next one opens automatically")
    return round_out(row)


def finalize_round(
    session: Session, round_id: int, *, block: int, metagraph: Metagraph, settings: Settings
) -> schemas.Round:
    """Close a round and fix its weights. Idempotent: a finalized round is returned as it is."""
    with write_transaction(session):
        get_round(session, round_id)
        # The conditional UPDATE is the lock: of several replicas finalizing at once, one wins.
        claimed = session.execute(
            update(models.Round)
            .where(models.Round.id == round_id, models.Round.status == "open")
            .values(status="finalized", finalized_block=block, finalized_at=utcnow())
        ).rowcount  # type: ignore[attr-defined]
        if not claimed:
            row = session.get(models.Round, round_id)
            session.refresh(row)
            assert row is not None
            return round_out(row)
        # Commitments never revealed can no longer be, the round being over.
        session.execute(
            update(models.Submission)
            .where(models.Submission.round_id == round_id, models.Submission.status == "committed")
            .values(status="expired", reason=REASON_NOT_REVEALED)
        )
        # Jobs still open end with the round (a result posted for one later is refused:
        # `round_finalized`), and revealed submissions no validator decided on end explicitly.
        in_round = select(models.Submission.id).where(models.Submission.round_id == round_id)
        session.execute(
            update(models.Job)
            .where(models.Job.submission_id.in_(in_round), models.Job.status != "done")
            .values(status="done", finished_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        session.execute(
            update(models.Submission)
            .where(
                models.Submission.round_id == round_id,
                models.Submission.status.in_(("revealed", "evaluating")),
            )
            .values(status="expired", reason=REASON_UNEVALUATED)
            .execution_options(synchronize_session=False)
        )
        subs = session.scalars(select(models.Submission).where(models.Submission.round_id == round_id)).all()
        vector = compute_weights(subs, metagraph, settings, round_validators(session, round_id))
        row = session.get(models.Round, round_id)
        assert row is not None
        session.refresh(row)
        row.weights = vector.as_json()
        row.winner_hotkey = vector.winner_hotkey
        out = round_out(row)
    log.info("finalized round %s: winner %s, weights %s", round_id, vector.winner_hotkey, vector.as_json())
    return out


def rounds_due(session: Session, block: int, settings: Settings) -> list[int]:
    """Open rounds automatic finalizing closes at ``block``: past their end, and either every job of
    theirs is done or FINALIZE_GRACE_BLOCKS have passed since the end (evaluations of late reveals
    get time to finish; a stuck job cannot hold a round open for ever)."""
    assert settings.finalize_grace_blocks is not None
    pending = (
        select(models.Job.id)
        .join(models.Submission, models.Submission.id == models.Job.submission_id)
        .where(models.Submission.round_id == models.Round.id, models.Job.status != "done")
        .exists()
    )
    return list(
        session.scalars(
            select(models.Round.id).where(
                models.Round.status == "open",
                models.Round.end_block <= block,
                ~pending | (models.Round.end_block + settings.finalize_grace_blocks <= block),
            )
        ).all()
    )


def latest_weights(session: Session, settings: Settings, metagraph: Metagraph | None) -> schemas.Weights:
    row = session.scalars(
        select(models.Round).where(models.Round.status == "finalized").order_by(models.Round.id.desc())
    ).first()
    if row is None or row.weights is None:
        burn = burn_only(settings, metagraph)
        return schemas.Weights(round_id=None, uids=burn.uids, weights=burn.weights, hotkeys=burn.hotkeys)
    return schemas.Weights(round_id=row.id, **row.weights)
