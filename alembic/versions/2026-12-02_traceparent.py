"""traceparent: the W3C trace context a job was submitted in, so the worker's run span is its child

Revision ID: 0017_traceparent
Revises: 0016_batches_list
Create Date: 2026-12-02 09:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0017_traceparent"
down_revision: str | None = "0016_batches_list"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Nullable, no default: adding it rewrites nothing (a catalog change only), whatever the table's size.
def upgrade() -> None:
    op.add_column("jobs", sa.Column("traceparent", sa.String(length=55), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "traceparent")
