"""webhooks: a job's webhook_url, per-key signing secrets (encrypted), an outbox written by a trigger

Revision ID: 0014_webhooks
Revises: 0013_caps
Create Date: 2026-12-01 12:40:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0014_webhooks"
down_revision: str | None = "0013_caps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies (a migration must not change when the code does): terminal statuses, the 24 h a delivery
# is retried for.
TERMINAL = "'cancelled', 'completed', 'failed'"

# The outbox writer. A trigger, like the stats one (0008): every path that ends a job (end of runs, cancel,
# bulk cancel, lease recovery, whatever comes next) writes its delivery in the same transaction as the
# outcome, so an outcome is never committed without its webhook, nor a webhook without its outcome. The
# event's type and time are fixed here; the body (the job view) is rendered by the sender from the job row.
ON_END = """
CREATE FUNCTION jp_webhook_on_end() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ended timestamptz := coalesce(NEW.finished_at, now());
BEGIN
    INSERT INTO webhook_deliveries (id, job_id, owner_id, event_type, occurred_at, give_up_at)
    VALUES (gen_random_uuid(), NEW.id, NEW.owner_id, 'job.' || NEW.status, ended,
            now() + interval '24 hours');
    RETURN NULL;
END
$$
"""
TRIGGER = f"""
CREATE TRIGGER jp_webhook_ended AFTER UPDATE OF status ON jobs FOR EACH ROW
WHEN (NEW.webhook_url IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN ({TERMINAL}))
EXECUTE FUNCTION jp_webhook_on_end()
"""
TS = sa.DateTime(timezone=True)
UUID = postgresql.UUID(as_uuid=True)


def upgrade() -> None:
    op.add_column("jobs", sa.Column("webhook_url", sa.String(length=2000), nullable=True))
    op.create_table(
        "webhook_secrets",
        sa.Column("key_id", UUID, nullable=False),
        # nonce || AES-GCM ciphertext of the whsec_ secret, bound to key_id (backend/services/webhooks.py)
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        # the secret before the last rotation: deliveries carry its signature too for a while
        sa.Column("previous_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("rotated_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name=op.f("fk_webhook_secrets_key_id_api_keys"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_webhook_secrets")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", UUID, nullable=False),
        sa.Column("job_id", UUID, nullable=False),
        sa.Column("owner_id", UUID, nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("give_up_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')", name=op.f("ck_webhook_deliveries_status_valid")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_webhook_deliveries_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_webhook_deliveries_job", "webhook_deliveries", ["job_id", "created_at"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", UUID, nullable=False),
        sa.Column("attempted_at", TS, nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index("ix_webhook_attempts_delivery", "webhook_attempts", ["delivery_id", "id"])
    op.execute(ON_END)
    op.execute(TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER jp_webhook_ended ON jobs")
    op.execute("DROP FUNCTION jp_webhook_on_end()")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_secrets")
    op.drop_column("jobs", "webhook_url")
