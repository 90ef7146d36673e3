"""The evaluator a round is judged by: rounds.evaluator_version and rounds.baseline_id, pinned by the
round's first accepted pass or fail that carries both.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rounds opened before this revision stay unpinned (NULL) until a result that names both comes.
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(sa.Column("evaluator_version", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("baseline_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rounds") as batch:
        for name in ("baseline_id", "evaluator_version"):
            batch.drop_column(name)
