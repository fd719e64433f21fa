"""The API function's configuration block."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, SecretStr

from shared.sessions.factory import SessionSettings
from shared.settings import AwsSettings, DatabaseSettings, QueueSettings, SecretsSettings
from shared.spend_settings import SpendControlSettings
from shared.work_signal.factory import WorkSignalSettings

if TYPE_CHECKING:
    from functions.api.db import DatabaseTls, WakeBudget


class ApiSettings(
    DatabaseSettings,
    QueueSettings,
    SecretsSettings,
    SessionSettings,
    WorkSignalSettings,
    AwsSettings,
    SpendControlSettings,
):
    database_secret_ref: Annotated[
        str | None,
        Field(
            description="secret:// reference to RDS credentials ({username, password}, maybe host, port, "
            "dbname): the deploy hook's master login (AWS); overrides database_url."
        ),
    ] = None
    database_host: Annotated[
        str | None, Field(description="PostgreSQL host (AWS), for an IAM login or a secret without one.")
    ] = None
    database_port: Annotated[int, Field(ge=1, le=65535, description="PostgreSQL port.")] = 5432
    database_name: Annotated[str | None, Field(description="PostgreSQL database name.")] = None
    database_iam_user: Annotated[
        str | None,
        Field(
            description="Log in as this user with an IAM authentication token (AWS: the API); needs "
            "database_host; overrides database_url and database_secret_ref."
        ),
    ] = None
    database_app_user: Annotated[
        str | None,
        Field(
            description="The deploy hook creates this IAM-authenticated login and grants it the tables' rows."
        ),
    ] = None
    database_wake_timeout_s: Annotated[
        float | None,
        Field(
            gt=0,
            description="How long a new connection keeps trying a database that does not answer (a paused "
            "Aurora writer resumes in ~15 s) before the request gets 503 + Retry-After; unset = one attempt.",
        ),
    ] = None
    database_tls: Annotated[
        Literal["verify-full", "require", "disable"] | None,
        Field(
            description=(
                "PostgreSQL TLS: verify-full (certificate and host name checked against "
                "database_ca_bundle), require (encrypted, unverified) or disable; unset = TLS if offered, "
                "unverified, and none to a loopback host (127.0.0.1, ::1, localhost)."
            )
        ),
    ] = None
    database_ca_bundle: Annotated[
        Path | None,
        Field(description="PEM bundle for verify-full; default: the RDS root CAs shipped with the API."),
    ] = None
    database_prepared_statements: Annotated[
        int,
        Field(
            ge=0,
            le=10_000,
            description="PostgreSQL: statements each connection keeps prepared on the server (the most "
            "recently used); 0 = none, for a pooler that moves a session between server connections "
            "(PgBouncer in transaction mode).",
        ),
    ] = 256
    bootstrap_admin_key: Annotated[
        SecretStr | None, Field(description="Embedded stack: seed an admin with this key if none exists.")
    ] = None
    bootstrap_admin_key_ref: Annotated[
        str | None, Field(description="AWS: the same, read from the secrets port by reference.")
    ] = None
    max_body_bytes: Annotated[int, Field(ge=1024, description="Larger request bodies get 413.")] = 1_048_576
    port_range_start: Annotated[int, Field(ge=1024, le=65535)] = 8000
    port_range_end: Annotated[int, Field(ge=1024, le=65535)] = 8999
    limit_projects_per_user: Annotated[
        int, Field(ge=0, description="Projects (not archived) one person may own; admins are not bounded.")
    ] = 50
    limit_active_tasks_per_user: Annotated[
        int, Field(ge=0, description="Queued, running or waiting tasks one person may have at once.")
    ] = 5
    limit_tasks_per_hour: Annotated[
        int, Field(ge=0, description="Tasks one person may create in any rolling hour.")
    ] = 60
    limit_shared_ports_per_user: Annotated[
        int,
        Field(
            ge=0,
            description="Ports one person's projects may hold on servers they do not own (e.g. localhost).",
        ),
    ] = 10
    limit_workers_per_user: Annotated[
        int,
        Field(
            ge=0,
            description="Live workers (task and Product Owner workers) one person may have at once.",
        ),
    ] = 4
    idempotency_window_s: Annotated[
        int,
        Field(
            ge=60, description="How long an Idempotency-Key replays its first answer; older keys are pruned."
        ),
    ] = 86_400

    database_idle_session_s: Annotated[
        int | None,
        Field(
            ge=1,
            description="With database_wake_timeout_s: PostgreSQL closes the API's connections idle this long, "
            "so a warm function never keeps a pausing database awake.",
        ),
    ] = None

    @property
    def wake_budget(self) -> WakeBudget | None:
        from functions.api.db import WakeBudget

        if not self.database_wake_timeout_s:
            return None
        return WakeBudget(self.database_wake_timeout_s, release_idle_s=self.database_idle_session_s)

    @property
    def effective_database_tls(self) -> DatabaseTls:
        from functions.api.db import DatabaseTls

        return DatabaseTls(self.database_tls, self.database_ca_bundle)
