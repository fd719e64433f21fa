"""task_notifications: the Telegram status message of each task (one per task, final sent once)

Revision ID: 0007_task_notifications
Revises: 0006_incidents_repo_sync
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_task_notifications"
down_revision = "0006_incidents_repo_sync"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_notifications",
        sa.Column("task_id", sa.String(36), sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("claim_holder", sa.String(200), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("final_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("task_notifications")
