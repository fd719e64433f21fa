"""worker stop request: the scheduler asks for a worker's stop once (compare-and-set)

Revision ID: 0004_worker_stop_requested
Revises: 0003_task_lease
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_worker_stop_requested"
down_revision = "0003_task_lease"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stop_requested_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_column("stop_requested_at")
