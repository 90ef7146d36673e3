"""Say where each result was reached: results.sandbox, and submissions.sandbox (its decisive results').

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Results posted before this revision said where they ran only inside their report: left NULL.
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("sandbox", sa.String(length=200), nullable=True))
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("sandbox", sa.String(length=512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("sandbox")
    with op.batch_alter_table("results") as batch:
        batch.drop_column("sandbox")
