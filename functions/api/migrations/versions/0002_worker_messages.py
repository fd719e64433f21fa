"""worker messages

Revision ID: 0002_worker_messages
Revises: 0001_initial
Create Date: 2026-11-26 06:19:39.913774
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_worker_messages"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=True),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("correlation_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["worker_id"], ["workers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id"),
    )
    with op.batch_alter_table("worker_messages", schema=None) as batch_op:
        batch_op.create_index("ix_worker_messages_worker_status", ["worker_id", "status", "id"], unique=False)

    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("config", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("create_request_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("exit_code", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint("uq_workers_create_request_id", ["create_request_id"])


def downgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_constraint("uq_workers_create_request_id", type_="unique")
        batch_op.drop_column("last_seen_at")
        batch_op.drop_column("exit_code")
        batch_op.drop_column("create_request_id")
        batch_op.drop_column("config")

    with op.batch_alter_table("worker_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_worker_messages_worker_status")

    op.drop_table("worker_messages")
