"""batches_list: indexes for the dashboard's batch list, newest first, a key's or every key's

Revision ID: 0016_batches_list
Revises: 0015_batches
Create Date: 2026-12-02 09:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0016_batches_list"
down_revision: str | None = "0015_batches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# `batches` had only its primary key: a key's list (keyset on (created_at, id) after owner_id = $1) and
# an admin's list of every key's batches (keyset on (created_at, id) alone) would sort the whole table on
# every page. The owner index also serves the ON DELETE CASCADE from api_keys. Batch rows are few (one per
# POST /batches), so the two indexes cost little on insert.
def upgrade() -> None:
    op.create_index("ix_batches_owner_created", "batches", ["owner_id", "created_at", "id"])
    op.create_index("ix_batches_created", "batches", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_batches_created", table_name="batches")
    op.drop_index("ix_batches_owner_created", table_name="batches")
