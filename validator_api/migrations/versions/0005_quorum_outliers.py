"""Results judged together: submissions.evaluations (distinct validators with a verdict) and
results.outlier (a result that disagrees with the other validators').

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("evaluations", sa.Integer(), nullable=True))
    # Counted from the results already there, so an upgrade in the middle of a round keeps its standings.
    op.execute(
        "UPDATE submissions SET evaluations = (SELECT count(DISTINCT results.validator_hotkey) "
        "FROM results WHERE results.submission_id = submissions.id AND results.verdict IN ('pass', 'fail'))"
    )
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("outlier", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.drop_column("outlier")
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("evaluations")
