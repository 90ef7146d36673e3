"""SQLAlchemy 2.0 models of the Validator API: rounds, submissions, jobs, results, nonces.

The invariants the protocol depends on live in the database, not in one process's memory, so any
number of API replicas stay correct: one open round at a time (partial unique index), one
submission per commitment hash, one nonce per hotkey, one job of a submission per validator
(`job_assignments`), and foreign keys between them all. Times are stored as naive UTC and read
back as aware UTC (`UTCDateTime`), which behaves the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROUND_STATUSES = ("open", "finalized")
SUBMISSION_STATUSES = ("committed", "revealed", "evaluating", "scored", "rejected", "expired", "duplicate")
JOB_STATUSES = ("queued", "claimed", "done")
VERDICTS = ("pass", "fail", "error")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; stored naive UTC on every backend."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UTCDateTime needs an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class FiniteFloat(TypeDecorator[float]):
    """A float column that never holds or yields inf or NaN: those read and write as NULL (no number).

    Request bodies refuse non-finite numbers, but a median of huge values overflows to inf, and rows
    written before the refusal may hold one; an infinite score must not rank first, nor break a page.
    """

    impl = Float
    cache_ok = True

    def process_bind_param(self, value: float | None, dialect: Dialect) -> float | None:
        return value if value is None or math.isfinite(value) else None

    def process_result_value(self, value: float | None, dialect: Dialect) -> float | None:
        return value if value is None or math.isfinite(value) else None


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), int: Integer()}


class Round(Base):
    __tablename__ = "rounds"
    __table_args__ = (
        CheckConstraint(_in("status", ROUND_STATUSES), name="status"),
        CheckConstraint("end_block > start_block", name="blocks"),
        # At most one open round, whichever replica or CLI opened it.
        Index(
            "uq_rounds_one_open",
            "status",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    start_block: Mapped[int] = mapped_column(BigInteger)
    end_block: Mapped[int] = mapped_column(BigInteger)
    target_shape: Mapped[dict[str, Any]]
    baseline_ms: Mapped[float | None] = mapped_column(FiniteFloat)
    winner_hotkey: Mapped[str | None] = mapped_column(String(64))
    finalized_block: Mapped[int | None] = mapped_column(BigInteger)
    # {"uids": [...], "weights": [...], "hotkeys": [...]}, frozen at finalize so GET /v1/weights is stable.
    weights: Mapped[dict[str, Any] | None]
    # The evaluator and baseline the round's results are judged by, pinned by its first pass/fail naming both.
    evaluator_version: Mapped[str | None] = mapped_column(String(32))
    baseline_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finalized_at: Mapped[datetime | None]


class Submission(Base):
    __tablename__ = "submissions"
    __table_args__ = (
        CheckConstraint(_in("status", SUBMISSION_STATUSES), name="status"),
        CheckConstraint("reveal_deadline_block >= reveal_block", name="window"),
        Index("ix_submissions_round_status", "round_id", "status"),
        Index("ix_submissions_tree_hash", "kernel_tree_hash"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="RESTRICT"), index=True)
    hotkey: Mapped[str] = mapped_column(String(64), index=True)
    commitment_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="committed")
    commit_block: Mapped[int] = mapped_column(BigInteger)
    reveal_block: Mapped[int] = mapped_column(BigInteger)
    reveal_deadline_block: Mapped[int] = mapped_column(BigInteger)
    revealed_block: Mapped[int | None] = mapped_column(BigInteger)
    repo_url: Mapped[str | None] = mapped_column(String(512))
    commit_sha: Mapped[str | None] = mapped_column(String(40))
    inference_url: Mapped[str | None] = mapped_column(String(512))
    kernel_tree_hash: Mapped[str | None] = mapped_column(String(64))
    # The distinct sandboxes of its decisive results, '; '-separated (shown beside the verdict).
    sandbox: Mapped[str | None] = mapped_column(String(512))
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("submissions.id", ondelete="SET NULL"))
    score: Mapped[float | None] = mapped_column(FiniteFloat)
    # The score's 95% interval, and whether most passing results were inconclusive (never counted).
    score_ci_low: Mapped[float | None] = mapped_column(FiniteFloat)
    score_ci_high: Mapped[float | None] = mapped_column(FiniteFloat)
    inconclusive: Mapped[bool | None] = mapped_column(Boolean)
    median_ms: Mapped[float | None] = mapped_column(FiniteFloat)
    # Distinct validators with a pass or fail: it counts only once enough of them judged it.
    evaluations: Mapped[int | None] = mapped_column(Integer)
    correct: Mapped[bool | None] = mapped_column(Boolean)
    verified: Mapped[bool | None] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        CheckConstraint("attempt >= 1", name="attempt"),
        UniqueConstraint("submission_id", "slot", name="uq_jobs_submission_slot"),
        # A claim looks for queued jobs in id order, then for lapsed leases: one index each.
        Index("ix_jobs_status_id", "status", "id"),
        Index("ix_jobs_status_lease", "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"))
    slot: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    validator_hotkey: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobAssignment(Base):
    """Which job of a submission a validator holds or held: the database refuses a second one."""

    __tablename__ = "job_assignments"
    __table_args__ = (
        UniqueConstraint("submission_id", "validator_hotkey", name="uq_job_assignments_submission_validator"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"))
    validator_hotkey: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Result(Base):
    __tablename__ = "results"
    __table_args__ = (
        CheckConstraint(_in("verdict", VERDICTS), name="verdict"),
        UniqueConstraint("job_id", "attempt", name="uq_results_job_attempt"),
        Index("ix_results_submission", "submission_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"))
    validator_hotkey: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    verdict: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    median_ms: Mapped[float | None] = mapped_column(FiniteFloat)
    baseline_ms: Mapped[float | None] = mapped_column(FiniteFloat)
    speedup: Mapped[float | None] = mapped_column(FiniteFloat)
    speedup_ci_low: Mapped[float | None] = mapped_column(FiniteFloat)
    speedup_ci_high: Mapped[float | None] = mapped_column(FiniteFloat)
    inconclusive: Mapped[bool | None] = mapped_column(Boolean)
    evaluator_version: Mapped[str | None] = mapped_column(String(32))
    baseline_id: Mapped[str | None] = mapped_column(String(64))
    max_rel_error: Mapped[float | None] = mapped_column(FiniteFloat)
    peak_mem_mb: Mapped[float | None] = mapped_column(FiniteFloat)
    kernel_tree_hash: Mapped[str | None] = mapped_column(String(64))
    sandbox: Mapped[str | None] = mapped_column(String(200))
    logit_verdict: Mapped[str | None] = mapped_column(String(8))
    logit_check: Mapped[dict[str, Any] | None]
    report: Mapped[dict[str, Any] | None]
    # Set when this result disagrees with the other validators' on the same submission.
    outlier: Mapped[bool | None] = mapped_column(Boolean)
    # sha256 of the posted body (canonical JSON), so a retried identical post is recognised.
    fingerprint: Mapped[str] = mapped_column(String(64))
    # The answer given, replayed verbatim to an identical retry.
    response: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuthNonce(Base):
    __tablename__ = "auth_nonces"
    __table_args__ = (UniqueConstraint("hotkey", "nonce_ns", name="uq_auth_nonces_hotkey_nonce"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    hotkey: Mapped[str] = mapped_column(String(64))
    nonce_ns: Mapped[int] = mapped_column(BigInteger, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# The tables themselves, for the Core statements of the busiest writes (services/submissions.py, jobs.py).
ROUNDS = Round.__table__
SUBMISSIONS = Submission.__table__
JOBS = Job.__table__
ASSIGNMENTS = JobAssignment.__table__
RESULTS = Result.__table__
