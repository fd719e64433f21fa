"""incidents (state changes told to owners once) and the repository picture on projects

Revision ID: 0006_incidents_repo_sync
Revises: 0005_deployments
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_incidents_repo_sync"
down_revision = "0005_deployments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False),
        sa.Column(
            "project_id", sa.String(36), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("server_id", sa.String(36), sa.ForeignKey("servers.id", ondelete="CASCADE"), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_incidents_owner_id", "incidents", ["owner_id"])
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("repo_head", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("repo_pull_requests", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(
            sa.Column("repo_missing", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("repo_checked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("repo_checked_at")
        batch_op.drop_column("repo_missing")
        batch_op.drop_column("repo_pull_requests")
        batch_op.drop_column("repo_head")
    op.drop_index("ix_incidents_owner_id", table_name="incidents")
    op.drop_table("incidents")
