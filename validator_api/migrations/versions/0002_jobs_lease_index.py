"""Index jobs by (status, lease_expires_at), so a claim finds lapsed leases without a scan.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_jobs_status_lease", "jobs", ["status", "lease_expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_jobs_status_lease", table_name="jobs")
