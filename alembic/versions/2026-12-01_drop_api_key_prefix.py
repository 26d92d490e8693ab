"""drop api_keys.prefix: the first characters of a secret are not a safe identifier

Keys are shown and revoked by their id. The downgrade brings the column back for the previous code,
filled with a placeholder: the hashes cannot give the secrets' first characters back.

Revision ID: 0002_drop_api_key_prefix
Revises: 0001_initial
Create Date: 2026-12-01 08:30:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002_drop_api_key_prefix"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLACEHOLDER = "(unknown)"


def upgrade() -> None:
    op.drop_column("api_keys", "prefix")


def downgrade() -> None:
    # NOT NULL as before; the default only fills existing rows, then goes (the old code always sets it).
    op.add_column(
        "api_keys",
        sa.Column("prefix", sa.String(length=12), nullable=False, server_default=PLACEHOLDER),
    )
    op.alter_column("api_keys", "prefix", server_default=None)
