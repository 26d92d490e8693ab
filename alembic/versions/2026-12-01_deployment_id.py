"""deployment: this database's stable identity, which marks the result files it writes

One row at most (the primary key is a `singleton` column that can only be true). The row is not
inserted here but on first start (DeploymentRepository.id): a database cloned as a template before
it was ever used does not hand one identity to every clone.

Revision ID: 0003_deployment_id
Revises: 0002_drop_api_key_prefix
Create Date: 2026-12-01 09:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003_deployment_id"
down_revision: str | None = "0002_drop_api_key_prefix"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deployment",
        sa.Column("singleton", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("singleton", name=op.f("ck_deployment_singleton")),
        sa.PrimaryKeyConstraint("singleton", name=op.f("pk_deployment")),
    )


def downgrade() -> None:
    op.drop_table("deployment")
