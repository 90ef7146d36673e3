"""Speed-ups with an interval: results.speedup_ci_low/high, inconclusive, evaluator_version and
baseline_id; submissions.score_ci_low/high and inconclusive.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Results posted before this revision had no interval: NULL, and they are judged as before.
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("speedup_ci_low", sa.Float(), nullable=True))
        batch.add_column(sa.Column("speedup_ci_high", sa.Float(), nullable=True))
        batch.add_column(sa.Column("inconclusive", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("evaluator_version", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("baseline_id", sa.String(length=64), nullable=True))
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("score_ci_low", sa.Float(), nullable=True))
        batch.add_column(sa.Column("score_ci_high", sa.Float(), nullable=True))
        batch.add_column(sa.Column("inconclusive", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        for name in ("inconclusive", "score_ci_high", "score_ci_low"):
            batch.drop_column(name)
    with op.batch_alter_table("results") as batch:
        for name in ("baseline_id", "evaluator_version", "inconclusive", "speedup_ci_high", "speedup_ci_low"):
            batch.drop_column(name)
