"""ORM models: the only place the schema is described. Never imported outside functions/api."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return as_utc(value)


def as_utc(value: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime: SQLite's naive values are UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, datetime: UtcDateTime}


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    telegram_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    name: Mapped[str] = mapped_column(String(200))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    po_news_seen_at: Mapped[datetime | None]
    """Task outcomes up to here were handed to the person's Product Owner (the next message carries later ones)."""


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="cli")
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (Index("uq_projects_domain", "domain", unique=True),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    modules: Mapped[list[str]] = mapped_column(default=list)
    agent: Mapped[str | None] = mapped_column(String(64))
    repo_url: Mapped[str | None] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(32), default="draft")
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    repo_head: Mapped[str | None] = mapped_column(String(64))
    repo_pull_requests: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default="[]")
    repo_missing: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    repo_checked_at: Mapped[datetime | None]
    domain: Mapped[str | None] = mapped_column(String(253))
    """The hostname the project is served under (ssh servers: the proxy gets it a certificate)."""
    approval: Mapped[str | None] = mapped_column(String(32))
    """Which steps wait for the owner's approval: "deploy", "plan", "deploy,plan" or "none"; None: the
    settings' default (`ORCH_APPROVAL_DEFAULT`)."""
    deployment: Mapped[Deployment | None] = relationship(viewonly=True, uselist=False)
    """Loaded when read (for `deployed_url`), not with every project: starting a task locks the project row
    and never needs it; the listing joins it in its own query (services.projects.list_page)."""

    @property
    def deployed_url(self) -> str | None:
        """The live URL while the project is deployed."""
        found = self.deployment
        return found.url if found is not None and found.status == "deployed" else None


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_listing", "created_at", "id"),
        Index("ix_tasks_project_type_status", "project_id", "type", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), default="QUEUED", index=True)
    spec: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    correlation_id: Mapped[str] = mapped_column(String(64), default=new_id)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    lease_holder: Mapped[str | None] = mapped_column(String(200))
    """Who is driving the task's graph right now; one holder at a time (compare-and-set)."""
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    failure_reason: Mapped[str | None] = mapped_column(String(32))
    """A FAILED task's machine-readable reason: budget, rejected, approval_timeout, review_timeout..."""


class TaskEvent(Base):
    """Append-only: the ProgressEvent stream of a task, ordered by `seq`."""

    __tablename__ = "task_events"
    __table_args__ = (Index("ix_task_events_task_seq", "task_id", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    progress_pct: Mapped[int | None] = mapped_column(Integer)
    current_step: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    error_type: Mapped[str | None] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(64))
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)


class Server(Base):
    __tablename__ = "servers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    handle: Mapped[str] = mapped_column(String(63), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    ssh_user: Mapped[str] = mapped_column(String(64), default="root")
    ssh_key_ref: Mapped[str | None] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(32), default="unknown")
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    facts: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    checked_at: Mapped[datetime | None]


class Deployment(Base):
    """Where a project runs (one row per project) and whether it answers its health URL."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("project_id", name="uq_deployments_project"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"))
    port: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(String(1000))
    health_url: Mapped[str] = mapped_column(String(1000))
    ref: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="deployed")
    """deployed | stopped"""
    health: Mapped[str] = mapped_column(String(16), default="unknown")
    """unknown | up | down"""
    health_changed_at: Mapped[datetime | None]
    checked_at: Mapped[datetime | None]
    task_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    slot: Mapped[str] = mapped_column(String(1), default="", server_default="")
    """The slot serving now ("a" | "b"); "" for a deployment made before slots: in place on `port`."""


class Release(Base):
    """One per deploy task (a fix round of the task updates it): what shipped, where, and how it ended.
    The project's current release is its one `serving` row."""

    __tablename__ = "releases"
    __table_args__ = (
        UniqueConstraint("project_id", "number", name="uq_releases_project_number"),
        UniqueConstraint("task_id", name="uq_releases_task"),
        Index("ix_releases_project_status", "project_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    task_id: Mapped[str] = mapped_column(String(36))
    commit_sha: Mapped[str] = mapped_column(String(40))
    ref: Mapped[str | None] = mapped_column(String(255))
    server_id: Mapped[str | None] = mapped_column(ForeignKey("servers.id", ondelete="SET NULL"))
    slot: Mapped[str] = mapped_column(String(1))
    port: Mapped[int] = mapped_column(Integer)
    url: Mapped[str | None] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(16), default="deploying")
    """deploying | serving | failed | superseded"""
    error: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str | None] = mapped_column(String(36))
    rollback_of: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Incident(Base):
    """A change of state an owner is told about once: a service down / up again, a server unreachable /
    back, a repository gone. Written in the same transaction as the compare-and-set that saw the flip."""

    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    server_id: Mapped[str | None] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    notified_at: Mapped[datetime | None]
    notify_holder: Mapped[str | None] = mapped_column(String(200))
    notify_claimed_until: Mapped[datetime | None]
    """The notifier pushing it now (compare-and-set, expires): one push at a time, at least once."""


class PortAllocation(Base):
    __tablename__ = "port_allocations"
    __table_args__ = (
        UniqueConstraint("server_id", "port", name="uq_port_allocations_server_port"),
        # one port per project, server and slot: a second row made every later lookup ambiguous (a 500)
        Index("uq_port_allocations_server_project_slot", "server_id", "project_id", "slot", unique=True),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"))
    port: Mapped[int] = mapped_column(Integer)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    slot: Mapped[str] = mapped_column(String(1), default="", server_default="")
    """"" the project's stable port (its address); "a" / "b" the ports its two release slots listen on."""


class ProjectSecret(Base):
    """Names and references only: values live behind the secrets port."""

    __tablename__ = "project_secrets"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_project_secrets_project_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    reference: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Worker(Base):
    __tablename__ = "workers"
    __table_args__ = (
        UniqueConstraint("create_request_id", name="uq_workers_create_request_id"),
        Index("uq_workers_token_hash", "token_hash", unique=True),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task_id: Mapped[str | None] = mapped_column(ForeignKey("tasks.id"), index=True)
    agent: Mapped[str] = mapped_column(String(64))
    runtime_handle: Mapped[str | None] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16), default="STARTING", index=True)
    exit_reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None]
    config: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    """WorkerConfig + context: what the wrapper fetches (secret references, never values)."""
    create_request_id: Mapped[str | None] = mapped_column(String(64))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    last_seen_at: Mapped[datetime | None]
    stop_requested_at: Mapped[datetime | None]
    """When the scheduler queued this worker's delete command; set once (compare-and-set)."""
    token_hash: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 of the worker's per-task token (`functions.api.worker_tokens`); a new token replaces it."""
    token_expires_at: Mapped[datetime | None]


class WorkerMessage(Base):
    """A message (or file) for a worker; exactly one response per message reaches worker:responses."""

    __tablename__ = "worker_messages"
    __table_args__ = (Index("ix_worker_messages_worker_status", "worker_id", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    worker_id: Mapped[str] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"))
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="message")
    body: Mapped[str] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(String(1000))
    timeout_s: Mapped[int] = mapped_column(Integer, default=1800)
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    budget_micros: Mapped[int | None] = mapped_column(BigInteger)
    """What the agent may still spend on this message (micro-USD), fixed when it was queued; None: no limit."""
    budget_note: Mapped[str | None] = mapped_column(String(300))
    """Which budget that is, for the failure a person reads ("the project's monthly budget $5.00")."""

    @property
    def budget_usd(self) -> float | None:
        return None if self.budget_micros is None else round(self.budget_micros / 1_000_000, 6)


class OutboxMessage(Base):
    """Messages committed with the change that caused them; a dispatcher publishes them."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_unsent", "sent_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    queue: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    task_id: Mapped[str | None] = mapped_column(String(36), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class TaskNotification(Base):
    """The Telegram status message of a task: created once (claim), edited in place, final sent once."""

    __tablename__ = "task_notifications"

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    """The status message Telegram accepted; None until the first send is recorded."""
    text: Mapped[str | None] = mapped_column(Text)
    """What the status message says now (an edit is made only when the rendered text differs)."""
    claim_holder: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None]
    """One notifier at a time talks to Telegram about a task (compare-and-set, expires)."""
    final_sent_at: Mapped[datetime | None]
    """Set once, after Telegram accepted the final message."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class IdempotencyKey(Base):
    """The first answer to a creating call sent with an `Idempotency-Key`: the same caller sending the
    same key and request again gets it back instead of a second task. Pruned after the window."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_key"),
        Index("ix_idempotency_keys_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 of method, path and canonical JSON body: a reused key with another request is refused."""
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UsageEntry(Base):
    """One agent run's (or one worker's running time's) cost: the ledger. Written once per `key` (the
    worker message, or the worker), so a redelivered report never counts twice."""

    __tablename__ = "usage_entries"
    __table_args__ = (
        UniqueConstraint("key", name="uq_usage_entries_key"),
        Index("ix_usage_entries_user_created", "user_id", "created_at"),
        Index("ix_usage_entries_project_created", "project_id", "created_at"),
        Index("ix_usage_entries_task", "task_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(128))
    """`message:<worker message id>` for an agent run, `worker:<worker id>` for a worker's running time."""
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"))
    task_id: Mapped[str | None] = mapped_column(ForeignKey("tasks.id", ondelete="SET NULL"))
    worker_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    """"agent" (what the CLI reported) or "worker" (vCPU and memory time, priced from settings)."""
    agent: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128))
    input_tokens: Mapped[int | None] = mapped_column(BigInteger)
    output_tokens: Mapped[int | None] = mapped_column(BigInteger)
    cache_tokens: Mapped[int | None] = mapped_column(BigInteger)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """USD x 1,000,000: sums stay exact to the cent and below."""
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    vcpu_s: Mapped[float | None] = mapped_column(Float)
    gb_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Budget(Base):
    """A spending limit: per task or per month, for a person (set by an admin) or a project (its owner)."""

    __tablename__ = "budgets"
    __table_args__ = (UniqueConstraint("scope", "scope_id", "period", name="uq_budgets_scope_period"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    scope: Mapped[str] = mapped_column(String(8))
    """"user" or "project"."""
    scope_id: Mapped[str] = mapped_column(String(36))
    period: Mapped[str] = mapped_column(String(8))
    """"task" (each task of the scope) or "month" (a calendar month, UTC)."""
    limit_micros: Mapped[int] = mapped_column(BigInteger)
    set_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Gate(Base):
    """A durable wait for a person: an approval (plan / deploy) or a human review. One per task, kind and
    round; answered once (compare-and-set on `status`)."""

    __tablename__ = "gates"
    __table_args__ = (
        UniqueConstraint("task_id", "kind", "round", name="uq_gates_task_kind_round"),
        Index("ix_gates_status_expires", "status", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    """"plan", "deploy" (approvals) or "review" (human review)."""
    round: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    """pending -> approved | rejected | resumed | expired | cancelled."""
    summary: Mapped[str] = mapped_column(Text)
    """What the person is asked about, for a person (the plan, the release and its server, the last test output)."""
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    comment: Mapped[str | None] = mapped_column(Text)
    """The answer's comment, or a review's guidance."""
    answered_by: Mapped[str | None] = mapped_column(String(36))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
