"""releases (one per deploy task), release slots on port allocations and deployments, project domains

Revision ID: 0010_releases
Revises: 0009_worker_tokens

Existing port allocations become the project's stable port (slot ""), and existing deployments run in
place on it (slot ""): nothing moves until the project's next deploy.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_releases"
down_revision = "0009_worker_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "project_id", sa.String(36), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("commit_sha", sa.String(40), nullable=False),
        sa.Column("ref", sa.String(255), nullable=True),
        sa.Column(
            "server_id", sa.String(36), sa.ForeignKey("servers.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("slot", sa.String(1), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(1000), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(36), nullable=True),
        sa.Column("rollback_of", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("project_id", "number", name="uq_releases_project_number"),
        sa.UniqueConstraint("task_id", name="uq_releases_task"),
    )
    op.create_index("ix_releases_project_status", "releases", ["project_id", "status"])
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("domain", sa.String(253), nullable=True))
    op.create_index("uq_projects_domain", "projects", ["domain"], unique=True)
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("slot", sa.String(1), nullable=False, server_default=""))
    with op.batch_alter_table("port_allocations") as batch:
        batch.add_column(sa.Column("slot", sa.String(1), nullable=False, server_default=""))
    op.drop_index("uq_port_allocations_server_project", table_name="port_allocations")
    op.create_index(
        "uq_port_allocations_server_project_slot",
        "port_allocations",
        ["server_id", "project_id", "slot"],
        unique=True,
    )


def downgrade() -> None:
    ports = sa.table("port_allocations", sa.column("slot"))
    op.execute(sa.delete(ports).where(ports.c.slot != ""))  # a project keeps only its stable port
    op.drop_index("uq_port_allocations_server_project_slot", table_name="port_allocations")
    op.create_index(
        "uq_port_allocations_server_project", "port_allocations", ["server_id", "project_id"], unique=True
    )
    with op.batch_alter_table("port_allocations") as batch:
        batch.drop_column("slot")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("slot")
    op.drop_index("uq_projects_domain", table_name="projects")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("domain")
    op.drop_index("ix_releases_project_status", table_name="releases")
    op.drop_table("releases")
