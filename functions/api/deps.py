"""What the API's routes need (database, queue, secrets), built once per container from settings.

Tests and the embedded stack hand in their own with `set_deps`; nothing reads the environment
at import time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from functions.api.db import (
    Credentials,
    Database,
    IamTokenCredentials,
    RdsCredentials,
    get_database,
    rds_token_signer,
    url_from_rds_secret,
)
from functions.api.settings import ApiSettings

if TYPE_CHECKING:
    from shared.queues.port import QueuePort
    from shared.secrets.port import SecretsPort
    from shared.sessions.port import SessionStore
    from shared.work_signal import WorkSignalPort


@dataclass
class ApiDeps:
    db: Database
    settings: ApiSettings
    queue_factory: Callable[[], QueuePort]
    secrets_factory: Callable[[], SecretsPort]
    schema_ok: bool = False
    bootstrapped: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        from functions.api import work_marks

        # every write of a watched table marks the work signal the scheduler's jobs read first
        work_marks.install(self.db.sessions, lambda: self.work_signal)

    @cached_property
    def work_signal(self) -> WorkSignalPort:
        from shared.work_signal import build_work_signal

        return build_work_signal(self.settings)

    @cached_property
    def queue(self) -> QueuePort:
        return self.queue_factory()

    @cached_property
    def secrets(self) -> SecretsPort:
        return self.secrets_factory()

    def wake_worker(self, worker_id: str) -> None:
        """A message for `worker_id` has committed: wake its wrapper if it runs on this machine (the
        embedded stack, whose queue is local; in AWS a Fargate worker asks on its timer)."""
        if self.settings.queue_backend == "local":
            from shared.workers.wake import wake

            wake(worker_id)

    @cached_property
    def sessions(self) -> SessionStore:
        """Where workers' conversation sessions are kept (their presigned URLs, or the archive route)."""
        from shared.sessions.factory import build_session_store

        return build_session_store(self.settings)


def build_deps(settings: ApiSettings | None = None) -> ApiDeps:
    settings = settings or ApiSettings()

    def queue_factory() -> QueuePort:
        from shared.queues import build_queue

        return build_queue(settings, settings)

    def secrets_factory() -> SecretsPort:
        from shared.secrets import build_secrets

        return build_secrets(settings, settings)

    database_url, credentials = database_login(settings, secrets_factory)
    db = get_database(
        database_url,
        credentials,
        settings.effective_database_tls,
        settings.wake_budget,
        prepared_statements=settings.database_prepared_statements,
    )
    return ApiDeps(db, settings, queue_factory, secrets_factory)


def database_login(
    settings: ApiSettings, secrets_factory: Callable[[], SecretsPort]
) -> tuple[str, Credentials | None]:
    """The URL to connect to and how to log in: an IAM token (the API in AWS), the master secret (the deploy
    hook), or whatever `database_url` says (the embedded stack, tests)."""
    from sqlalchemy.engine import URL

    if settings.database_iam_user:
        if not settings.database_host:
            raise ValueError("ORCH_DATABASE_IAM_USER needs ORCH_DATABASE_HOST")
        user, host, port = settings.database_iam_user, settings.database_host, settings.database_port
        url = URL.create(
            "postgresql+pg8000", username=user, host=host, port=port, database=settings.database_name
        ).render_as_string()
        return url, IamTokenCredentials(user, rds_token_signer(host, port, user, settings.aws_region))
    if settings.database_secret_ref:
        ref = settings.database_secret_ref
        credentials = RdsCredentials(lambda: secrets_factory().get(ref))
        url = url_from_rds_secret(
            json.dumps(credentials.get()),
            host=settings.database_host,
            port=settings.database_port,
            database=settings.database_name,
        )
        return url, credentials
    return settings.effective_database_url, None


_deps: ApiDeps | None = None
_lock = threading.Lock()


def get_deps() -> ApiDeps:
    global _deps
    with _lock:
        if _deps is None:
            _deps = build_deps()
        return _deps


def set_deps(deps: ApiDeps | None) -> None:
    global _deps
    with _lock:
        _deps = deps


def forget_deps() -> ApiDeps | None:
    """Forget the container's dependencies (a SnapStart restore: `functions.api.restore_hooks`); returns them so
    the caller can release what they hold. The next `get_deps` builds them anew."""
    global _deps
    with _lock:
        previous, _deps = _deps, None
        return previous
