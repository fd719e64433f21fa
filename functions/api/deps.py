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

from functions.api.db import Database, RdsCredentials, get_database, url_from_rds_secret
from functions.api.settings import ApiSettings

if TYPE_CHECKING:
    from shared.queues.port import QueuePort
    from shared.secrets.port import SecretsPort
    from shared.sessions.port import SessionStore


@dataclass
class ApiDeps:
    db: Database
    settings: ApiSettings
    queue_factory: Callable[[], QueuePort]
    secrets_factory: Callable[[], SecretsPort]
    schema_ok: bool = False
    bootstrapped: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @cached_property
    def queue(self) -> QueuePort:
        return self.queue_factory()

    @cached_property
    def secrets(self) -> SecretsPort:
        return self.secrets_factory()

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

    database_url = settings.effective_database_url
    credentials = None
    if settings.database_secret_ref:
        ref = settings.database_secret_ref
        credentials = RdsCredentials(lambda: secrets_factory().get(ref))
        database_url = url_from_rds_secret(json.dumps(credentials.get()))
    db = get_database(database_url, credentials, settings.effective_database_tls)
    return ApiDeps(db, settings, queue_factory, secrets_factory)


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
