"""Small helpers the services share: dialect checks, medians, model → wire conversions."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Row
from sqlalchemy.orm import Session

from quasar import schemas
from validator_api import models


@contextmanager
def write_transaction(session: Session) -> Iterator[None]:
    """One transaction for a state change; a read-only transaction already begun is ended first."""
    if session.in_transaction():
        session.rollback()
    with session.begin():
        yield


def is_postgres(db: Session | Connection) -> bool:
    bind = db if isinstance(db, Connection) else db.get_bind()
    return bind.dialect.name == "postgresql"


def median(values: Iterable[float | None]) -> float | None:
    """The lower median of the values present: of two, the smaller. An average of the middle two
    would let one of two validators lift a score as far as it likes."""
    present = [v for v in values if v is not None]
    return float(statistics.median_low(present)) if present else None


def round_out(row: models.Round) -> schemas.Round:
    return schemas.Round(
        id=row.id,
        status=row.status,  # type: ignore[arg-type]
        start_block=row.start_block,
        end_block=row.end_block,
        target_shape=schemas.TargetShape.model_validate(row.target_shape),
        baseline_ms=row.baseline_ms,
        winner_hotkey=row.winner_hotkey,
        finalized_block=row.finalized_block,
        evaluator_version=row.evaluator_version,
        baseline_id=row.baseline_id,
    )


def submission_out(row: models.Submission | Row[Any]) -> schemas.Submission:
    """The wire shape of a submission, from an ORM object or a Core row of the whole table."""
    return schemas.Submission(
        id=row.id,
        round_id=row.round_id,
        hotkey=row.hotkey,
        status=row.status,  # type: ignore[arg-type]
        commitment_hash=row.commitment_hash,
        commit_block=row.commit_block,
        reveal_block=row.reveal_block,
        reveal_deadline_block=row.reveal_deadline_block,
        revealed_block=row.revealed_block,
        repo_url=row.repo_url,
        commit_sha=row.commit_sha,
        inference_url=row.inference_url,
        kernel_tree_hash=row.kernel_tree_hash,
        duplicate_of=row.duplicate_of,
        sandbox=row.sandbox,
        score=row.score,
        median_ms=row.median_ms,
        reason=row.reason,
        created_at=row.created_at,
    )
