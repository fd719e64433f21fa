"""spend and control (issue 21): the usage ledger, budgets, gates (approval / human review), a task's
failure reason, a project's approval policy, a worker message's budget, the PO's news marker

Revision ID: 0011_spend_control
Revises: 0010_releases

Expand-only: new tables and nullable columns; nothing existing changes meaning.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_spend_control"
down_revision = "0010_releases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_entries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column(
            "project_id", sa.String(36), sa.ForeignKey("projects.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("task_id", sa.String(36), sa.ForeignKey("tasks.id", ondelete="SET NULL"), nullable=True),
        sa.Column("worker_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("agent", sa.String(64), nullable=True),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cache_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("vcpu_s", sa.Float(), nullable=True),
        sa.Column("gb_s", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("key", name="uq_usage_entries_key"),
    )
    op.create_index("ix_usage_entries_user_created", "usage_entries", ["user_id", "created_at"])
    op.create_index("ix_usage_entries_project_created", "usage_entries", ["project_id", "created_at"])
    op.create_index("ix_usage_entries_task", "usage_entries", ["task_id"])
    op.create_table(
        "budgets",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("scope_id", sa.String(36), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("limit_micros", sa.BigInteger(), nullable=False),
        sa.Column("set_by", sa.String(36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("scope", "scope_id", "period", name="uq_budgets_scope_period"),
    )
    op.create_table(
        "gates",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("task_id", sa.String(36), sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False, server_default="{}"),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("answered_by", sa.String(36), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("task_id", "kind", "round", name="uq_gates_task_kind_round"),
    )
    op.create_index("ix_gates_status_expires", "gates", ["status", "expires_at"])
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("failure_reason", sa.String(32), nullable=True))
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("approval", sa.String(32), nullable=True))
    with op.batch_alter_table("worker_messages") as batch:
        batch.add_column(sa.Column("budget_micros", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("budget_note", sa.String(300), nullable=True))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("po_news_seen_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("po_news_seen_at")
    with op.batch_alter_table("worker_messages") as batch:
        batch.drop_column("budget_note")
        batch.drop_column("budget_micros")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("approval")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("failure_reason")
    op.drop_index("ix_gates_status_expires", table_name="gates")
    op.drop_table("gates")
    op.drop_table("budgets")
    op.drop_index("ix_usage_entries_task", table_name="usage_entries")
    op.drop_index("ix_usage_entries_project_created", table_name="usage_entries")
    op.drop_index("ix_usage_entries_user_created", table_name="usage_entries")
    op.drop_table("usage_entries")
