"""Initial schema: rounds, submissions, jobs, job assignments, results, auth nonces.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_nonces",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hotkey", sa.String(length=64), nullable=False),
        sa.Column("nonce_ns", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_nonces")),
        sa.UniqueConstraint("hotkey", "nonce_ns", name="uq_auth_nonces_hotkey_nonce"),
    )
    op.create_index(op.f("ix_auth_nonces_nonce_ns"), "auth_nonces", ["nonce_ns"], unique=False)

    op.create_table(
        "rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("start_block", sa.BigInteger(), nullable=False),
        sa.Column("end_block", sa.BigInteger(), nullable=False),
        sa.Column("target_shape", sa.JSON(), nullable=False),
        sa.Column("baseline_ms", sa.Float(), nullable=True),
        sa.Column("winner_hotkey", sa.String(length=64), nullable=True),
        sa.Column("finalized_block", sa.BigInteger(), nullable=True),
        sa.Column("weights", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finalized_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint("status IN ('open', 'finalized')", name=op.f("ck_rounds_status")),
        sa.CheckConstraint("end_block > start_block", name=op.f("ck_rounds_blocks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rounds")),
    )
    op.create_index(
        "uq_rounds_one_open",
        "rounds",
        ["status"],
        unique=True,
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    )

    op.create_table(
        "submissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("hotkey", sa.String(length=64), nullable=False),
        sa.Column("commitment_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("commit_block", sa.BigInteger(), nullable=False),
        sa.Column("reveal_block", sa.BigInteger(), nullable=False),
        sa.Column("reveal_deadline_block", sa.BigInteger(), nullable=False),
        sa.Column("revealed_block", sa.BigInteger(), nullable=True),
        sa.Column("repo_url", sa.String(length=512), nullable=True),
        sa.Column("commit_sha", sa.String(length=40), nullable=True),
        sa.Column("inference_url", sa.String(length=512), nullable=True),
        sa.Column("kernel_tree_hash", sa.String(length=64), nullable=True),
        sa.Column("duplicate_of", sa.Integer(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("median_ms", sa.Float(), nullable=True),
        sa.Column("correct", sa.Boolean(), nullable=True),
        sa.Column("verified", sa.Boolean(), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('committed', 'revealed', 'evaluating', 'scored', 'rejected', 'expired', 'duplicate')",
            name=op.f("ck_submissions_status"),
        ),
        sa.CheckConstraint("reveal_deadline_block >= reveal_block", name=op.f("ck_submissions_window")),
        sa.ForeignKeyConstraint(
            ["duplicate_of"],
            ["submissions.id"],
            name=op.f("fk_submissions_duplicate_of_submissions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["round_id"], ["rounds.id"], name=op.f("fk_submissions_round_id_rounds"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submissions")),
        sa.UniqueConstraint("commitment_hash", name=op.f("uq_submissions_commitment_hash")),
    )
    op.create_index(op.f("ix_submissions_hotkey"), "submissions", ["hotkey"], unique=False)
    op.create_index(op.f("ix_submissions_round_id"), "submissions", ["round_id"], unique=False)
    op.create_index("ix_submissions_round_status", "submissions", ["round_id", "status"], unique=False)
    op.create_index("ix_submissions_tree_hash", "submissions", ["kernel_tree_hash"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("validator_hotkey", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("status IN ('queued', 'claimed', 'done')", name=op.f("ck_jobs_status")),
        sa.CheckConstraint("attempt >= 1", name=op.f("ck_jobs_attempt")),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name=op.f("fk_jobs_submission_id_submissions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("submission_id", "slot", name="uq_jobs_submission_slot"),
    )
    op.create_index("ix_jobs_status_id", "jobs", ["status", "id"], unique=False)

    op.create_table(
        "job_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("validator_hotkey", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_assignments_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name=op.f("fk_job_assignments_submission_id_submissions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_assignments")),
        sa.UniqueConstraint(
            "submission_id", "validator_hotkey", name="uq_job_assignments_submission_validator"
        ),
    )
    op.create_index(op.f("ix_job_assignments_job_id"), "job_assignments", ["job_id"], unique=False)

    op.create_table(
        "results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("validator_hotkey", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("median_ms", sa.Float(), nullable=True),
        sa.Column("baseline_ms", sa.Float(), nullable=True),
        sa.Column("speedup", sa.Float(), nullable=True),
        sa.Column("max_rel_error", sa.Float(), nullable=True),
        sa.Column("peak_mem_mb", sa.Float(), nullable=True),
        sa.Column("kernel_tree_hash", sa.String(length=64), nullable=True),
        sa.Column("logit_verdict", sa.String(length=8), nullable=True),
        sa.Column("logit_check", sa.JSON(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("verdict IN ('pass', 'fail', 'error')", name=op.f("ck_results_verdict")),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_results_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name=op.f("fk_results_submission_id_submissions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_results")),
        sa.UniqueConstraint("job_id", "attempt", name="uq_results_job_attempt"),
    )
    op.create_index("ix_results_submission", "results", ["submission_id"], unique=False)


def downgrade() -> None:

    op.drop_index("ix_results_submission", table_name="results")
    op.drop_table("results")

    op.drop_index(op.f("ix_job_assignments_job_id"), table_name="job_assignments")
    op.drop_table("job_assignments")

    op.drop_index("ix_jobs_status_id", table_name="jobs")
    op.drop_table("jobs")

    op.drop_index("ix_submissions_tree_hash", table_name="submissions")
    op.drop_index("ix_submissions_round_status", table_name="submissions")
    op.drop_index(op.f("ix_submissions_round_id"), table_name="submissions")
    op.drop_index(op.f("ix_submissions_hotkey"), table_name="submissions")
    op.drop_table("submissions")

    op.drop_index("uq_rounds_one_open", table_name="rounds")
    op.drop_table("rounds")

    op.drop_index(op.f("ix_auth_nonces_nonce_ns"), table_name="auth_nonces")
    op.drop_table("auth_nonces")
