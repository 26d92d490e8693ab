"""job tags: a text[] column with a GIN index for GET /jobs?tag=

Revision ID: 0005_job_tags
Revises: 0004_per_key_limits
Create Date: 2026-12-01 10:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0005_job_tags"
down_revision: str | None = "0004_per_key_limits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("tags", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False))
    op.create_index("ix_jobs_tags", "jobs", ["tags"], postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("ix_jobs_tags", table_name="jobs", postgresql_using="gin")
    op.drop_column("jobs", "tags")
