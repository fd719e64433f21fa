"""incidents pushed to Telegram once: who is pushing one now (a claim that expires)

Revision ID: 0012_incident_push
Revises: 0011_spend_control

Expand-only: two nullable columns. `notified_at` (0006) stays the one mark of a pushed incident; the
claim only keeps two notifier invocations from pushing the same incident at the same time, and a
holder that died lets go when its claim runs out, so the incident is still pushed (at least once).
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_incident_push"
down_revision = "0011_spend_control"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("notify_holder", sa.String(200), nullable=True))
        batch.add_column(sa.Column("notify_claimed_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("notify_claimed_until")
        batch.drop_column("notify_holder")
