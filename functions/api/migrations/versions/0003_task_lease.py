"""task lease: one graph driver per task at a time

Revision ID: 0003_task_lease
Revises: 0002_worker_messages
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_task_lease"
down_revision = "0002_worker_messages"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_holder", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
        batch_op.drop_column("lease_holder")
