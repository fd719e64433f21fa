"""per-task worker tokens: a worker's row holds the SHA-256 of its one token and when it expires

Revision ID: 0009_worker_tokens
Revises: 0008_limits_idempotency
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_worker_tokens"
down_revision = "0008_limits_idempotency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("token_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("uq_workers_token_hash", "workers", ["token_hash"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_workers_token_hash", table_name="workers")
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("token_expires_at")
        batch.drop_column("token_hash")
