"""Calling the real API Lambda handler in-process, on SQLite or on the real PostgreSQL."""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from functions.api.db import Database, DatabaseTls, get_database
from functions.api.deps import ApiDeps, set_deps
from functions.api.handler import lambda_handler
from functions.api.migrate import upgrade
from functions.api.models import Base
from functions.api.settings import ApiSettings
from shared.apigw import http_api_event
from shared.queues.local import LocalQueue
from shared.secrets.local import LocalSecrets

ADMIN_KEY = "orch_test_admin_key_0123456789abcdef"


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body!r})"


class ApiHarness:
    def __init__(self, deps: ApiDeps, key: str = ADMIN_KEY) -> None:
        self.deps = deps
        self.key = key

    def as_key(self, key: str | None) -> ApiHarness:
        return ApiHarness(self.deps, key)  # type: ignore[arg-type]

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        raw_body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        all_headers = {"content-type": "application/json", **(headers or {})}
        if self.key is not None:
            all_headers["authorization"] = f"Bearer {self.key}"
        payload = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        event = http_api_event(
            method, path, {k: str(v) for k, v in (query or {}).items() if v is not None}, all_headers, payload
        )
        result = lambda_handler(event, None, deps=self.deps)
        raw = result.get("body") or ""
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw
        return Reply(int(result["statusCode"]), parsed, result.get("headers") or {})

    def get(self, path: str, **query: Any) -> Reply:
        return self.call("GET", path, query=query)

    def post(self, path: str, body: Any = None) -> Reply:
        return self.call("POST", path, body if body is not None else {})

    def put(self, path: str, body: Any) -> Reply:
        return self.call("PUT", path, body)

    def patch(self, path: str, body: Any) -> Reply:
        return self.call("PATCH", path, body)

    def delete(self, path: str) -> Reply:
        return self.call("DELETE", path)

    # conveniences ---------------------------------------------------------------------

    def new_user(
        self,
        name: str = "alice",
        telegram_id: int | None = None,
        scopes: list[str] | None = None,
        is_admin: bool = False,
    ) -> tuple[dict[str, Any], str]:
        user = self.as_key(ADMIN_KEY).post(
            "/users", {"name": name, "telegram_id": telegram_id, "is_admin": is_admin}
        )
        assert user.status == 201, user
        key = self.as_key(ADMIN_KEY).post(
            f"/users/{user.body['id']}/api-keys", {"scopes": scopes or ["user"]}
        )
        assert key.status == 201, key
        return user.body, key.body["key"]

    def new_project(self, name: str = "blog") -> dict[str, Any]:
        reply = self.post("/projects", {"name": name, "description": "a blog", "modules": ["backend"]})
        assert reply.status == 201, reply
        return reply.body  # type: ignore[no-any-return]


def build_deps(database_url: str, home: Path, bootstrap: bool = True) -> ApiDeps:
    settings = ApiSettings(
        home=home,
        database_url=database_url,
        bootstrap_admin_key=SecretStr(ADMIN_KEY) if bootstrap else None,
    )
    db = get_database(database_url)
    return ApiDeps(
        db=db,
        settings=settings,
        queue_factory=lambda: LocalQueue(home / "queue.db", visibility_timeout=30),
        secrets_factory=lambda: LocalSecrets(home / "secrets.json"),
    )


_sqlite_template: dict[str, Path] = {}


def migrated_sqlite(target: Path) -> str:
    """A migrated SQLite file (copied from a per-session template: migrating costs ~0.2 s)."""
    template = _sqlite_template.get("path")
    if template is None or not template.exists():
        template = target.parent / f"template-{uuid.uuid4().hex}.db"
        engine = create_engine(f"sqlite:///{template}")
        upgrade(engine)
        engine.dispose()
        _sqlite_template["path"] = template
    shutil.copy(template, target)
    return f"sqlite:///{target}"


def _admin_engine(url: str, **kwargs: Any) -> Engine:
    """A plain engine for the tests' own housekeeping, with the API's TLS choice (none to a loopback server:
    pg8000's TLS negotiation cost ~20 ms of CPU per connection, once per PostgreSQL test)."""
    return create_engine(url, connect_args=DatabaseTls().connect_args(make_url(url).host), **kwargs)


def reset_postgres(url: str) -> None:
    """Empty every table of an already migrated database (much faster than re-migrating)."""
    engine = _admin_engine(url)
    with engine.begin() as conn:
        names = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


def fresh_postgres_database(admin_url: str) -> str:
    """A new, migrated database on the server behind `admin_url`; returns its URL."""
    name = f"orch_test_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = _admin_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def drop_postgres_database(admin_url: str, url: str) -> None:
    from functions.api.db import dispose_all

    dispose_all()
    name = make_url(url).database
    admin = _admin_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def install(deps: ApiDeps) -> ApiHarness:
    set_deps(deps)
    return ApiHarness(deps)


__all__ = ["ADMIN_KEY", "ApiHarness", "Database", "Reply", "build_deps", "install"]
