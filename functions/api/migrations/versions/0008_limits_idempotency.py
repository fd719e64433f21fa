"""one port per project and server; idempotency keys for creating calls

Revision ID: 0008_limits_idempotency
Revises: 0007_task_notifications

Before the unique index, a project holding several ports on one server (the defect that made every
later allocation answer 500) keeps its oldest row: the others are removed, so the index can exist.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_limits_idempotency"
down_revision = "0007_task_notifications"
branch_labels = None
depends_on = None


def _keep_one_port_per_project(bind: sa.engine.Connection) -> None:
    """Data repair, not a schema change: duplicates were never valid (allocation broke on them)."""
    ports = sa.table(
        "port_allocations",
        sa.column("id"),
        sa.column("server_id"),
        sa.column("project_id"),
        sa.column("created_at"),
    )
    seen: set[tuple[str, str]] = set()
    extra: list[str] = []
    rows = bind.execute(
        sa.select(ports.c.id, ports.c.server_id, ports.c.project_id).order_by(ports.c.created_at, ports.c.id)
    )
    for row_id, server_id, project_id in rows:
        if (server_id, project_id) in seen:
            extra.append(row_id)
        seen.add((server_id, project_id))
    for start in range(0, len(extra), 500):
        bind.execute(sa.delete(ports).where(ports.c.id.in_(extra[start : start + 500])))


def upgrade() -> None:
    _keep_one_port_per_project(op.get_bind())
    op.create_index(
        "uq_port_allocations_server_project", "port_allocations", ["server_id", "project_id"], unique=True
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_key"),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index("uq_port_allocations_server_project", table_name="port_allocations")
