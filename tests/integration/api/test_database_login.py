"""How the API logs in to PostgreSQL in AWS (IAM token, no password) and waits out a paused Aurora writer."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from functions.api.db import (
    IAM_TOKEN_LIFETIME_S,
    IamTokenCredentials,
    WakeBudget,
    connect_waking,
    dispose_all,
    get_database,
    is_unreachable,
    rds_token_signer,
)
from functions.api.deps import ApiDeps, build_deps, database_login
from functions.api.errors import DatabaseWaking
from functions.api.settings import ApiSettings
from functions.migrations.bootstrap import ensure_app_login
from shared.queues.local import LocalQueue
from shared.secrets.local import LocalSecrets
from tests.api_support import ApiHarness, drop_postgres_database, fresh_postgres_database


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_an_iam_token_is_reused_inside_its_life_and_signed_again_after() -> None:
    clock, signed = Clock(), []

    def sign() -> str:
        signed.append(clock.now)
        return f"token-{len(signed)}"

    credentials = IamTokenCredentials("orchestrator_api", sign, reuse_s=600, clock=clock)
    assert credentials.get() == {"username": "orchestrator_api", "password": "token-1"}
    clock.now = 599
    assert credentials.get()["password"] == "token-1"
    clock.now = 601
    assert credentials.get()["password"] == "token-2"
    assert credentials.refresh()["password"] == "token-3"  # a refused login signs a new one
    with pytest.raises(ValueError, match="lives 900 s"):
        IamTokenCredentials("u", sign, reuse_s=IAM_TOKEN_LIFETIME_S)


def test_the_token_is_a_local_presign_for_the_host_port_and_user(monkeypatch: pytest.MonkeyPatch) -> None:
    # given credentials and no endpoint at all: signing makes no request
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_USE_DUALSTACK_ENDPOINT", "true")
    token = rds_token_signer(
        "db.cluster-x.us-east-1.rds.amazonaws.com", 5432, "orchestrator_api", "us-east-1"
    )()
    parts = urlsplit(f"https://{token}")
    query = parse_qs(parts.query)
    assert (parts.hostname, parts.port) == ("db.cluster-x.us-east-1.rds.amazonaws.com", 5432)
    assert query["Action"] == ["connect"] and query["DBUser"] == ["orchestrator_api"]
    assert query["X-Amz-Expires"] == ["900"]
    assert "/us-east-1/rds-db/aws4_request" in query["X-Amz-Credential"][0]


def test_the_api_logs_in_with_a_token_and_the_deploy_hook_with_the_master_secret(tmp_path: Path) -> None:
    api = ApiSettings(
        database_iam_user="orchestrator_api",
        database_host="db.example",
        database_port=5433,
        database_name="orchestrator",
        aws_region="us-east-1",
    )
    url, credentials = database_login(api, lambda: LocalSecrets(tmp_path / "s.json"))
    assert (
        make_url(url).render_as_string()
        == "postgresql+pg8000://orchestrator_api@db.example:5433/orchestrator"
    )
    assert isinstance(credentials, IamTokenCredentials)
    secrets = LocalSecrets(tmp_path / "s.json")
    secrets.put("secret://db/master", '{"username": "orchestrator", "password": "pw"}')  # RDS-managed shape
    hook = ApiSettings(
        database_secret_ref="secret://db/master", database_host="db.example", database_name="orchestrator"
    )
    url, _ = database_login(hook, lambda: secrets)
    parsed = make_url(url)
    assert (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == (
        "orchestrator",
        "pw",
        "db.example",
        5432,
        "orchestrator",
    )
    with pytest.raises(ValueError, match="ORCH_DATABASE_HOST"):
        database_login(ApiSettings(database_iam_user="u"), lambda: secrets)


def _refused() -> Exception:
    return ConnectionRefusedError("nothing listens")


def test_a_resuming_database_is_waited_for_within_the_budget() -> None:
    clock, attempts = Clock(), []

    def connect(timeout: float | None) -> str:
        attempts.append(timeout)
        if len(attempts) < 4:
            clock.now += 2  # each refused attempt takes a while
            raise _refused()
        return "connection"

    assert connect_waking(connect, WakeBudget(20, pause_s=1), clock=clock, sleep=clock.sleep) == "connection"
    assert len(attempts) == 4
    assert attempts[0] == 20 and all(t is not None and t < 20 for t in attempts[1:])  # what is left of it


def test_past_the_budget_the_caller_is_told_the_database_is_waking_up() -> None:
    clock = Clock()

    def connect(timeout: float | None) -> str:
        clock.now += 3
        raise _refused()

    with pytest.raises(DatabaseWaking) as caught:
        connect_waking(connect, WakeBudget(10, retry_after_s=7), clock=clock, sleep=clock.sleep)
    assert caught.value.status == 503 and caught.value.code == "database_waking"
    assert caught.value.retry_after_s == 7 and "waking up" in caught.value.message


def test_an_answer_from_postgresql_is_not_waited_for() -> None:
    refused_login = Exception({"S": "FATAL", "C": "28P01", "M": "password authentication failed"})
    calls = []

    def connect(timeout: float | None) -> str:
        calls.append(timeout)
        raise refused_login

    with pytest.raises(Exception, match="password authentication failed"):
        connect_waking(connect, WakeBudget(20), sleep=lambda _s: None)
    assert len(calls) == 1
    assert not is_unreachable(refused_login)
    assert is_unreachable(TimeoutError()) and is_unreachable(_refused())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_api_answers_503_with_retry_after_while_the_database_does_not_answer(tmp_path: Path) -> None:
    url = f"postgresql+pg8000://orchestrator_api@127.0.0.1:{_closed_port()}/orchestrator"
    settings = ApiSettings(home=tmp_path, database_url=url, database_wake_timeout_s=1.0)
    wake = WakeBudget(1.0, retry_after_s=9, pause_s=0.2)
    try:
        deps = ApiDeps(
            get_database(url, None, None, wake),
            settings,
            lambda: LocalQueue(tmp_path / "q.db", visibility_timeout=30),
            lambda: LocalSecrets(tmp_path / "s.json"),
        )
        reply = ApiHarness(deps).get("/projects")
    finally:
        dispose_all()
    assert reply.status == 503, reply
    assert reply.body["code"] == "database_waking"
    assert reply.headers.get("Retry-After") == "9"


@pytest.fixture
def database(postgres_url: str) -> Any:
    url = fresh_postgres_database(postgres_url)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:  # what RDS has: membership means "log in with an IAM token"
        connection.execute(
            text("DO $$ BEGIN CREATE ROLE rds_iam NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        )
    admin.dispose()
    yield url
    drop_postgres_database(postgres_url, url)


def test_the_api_login_may_change_rows_but_not_the_schema(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the deploy hook's grants (twice: idempotent)
    engine = create_engine(database)
    user = "orchestrator_api"
    assert ensure_app_login(engine, user)[:2] == ["login", "rds_iam"]
    ensure_app_login(engine, user)
    engine.dispose()
    target = make_url(database)
    # when the API logs in as that user (the test server trusts local logins: the token is not checked)
    for key, value in {
        "ORCH_HOME": str(tmp_path),
        "ORCH_DATABASE_IAM_USER": user,
        "ORCH_DATABASE_HOST": target.host or "127.0.0.1",
        "ORCH_DATABASE_PORT": str(target.port or 5432),
        "ORCH_DATABASE_NAME": target.database or "",
        "ORCH_DATABASE_WAKE_TIMEOUT_S": "5",
        "ORCH_DATABASE_IDLE_SESSION_S": "1",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "ORCH_AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    try:
        deps = build_deps(ApiSettings())
        with deps.db.engine.begin() as connection:
            assert connection.execute(text("SELECT current_user")).scalar() == user
            assert connection.execute(text("SELECT pg_has_role(current_user, 'rds_iam', 'member')")).scalar()
            connection.execute(
                text("INSERT INTO users (id, name, is_admin, created_at) VALUES ('u1', 'ann', false, now())")
            )
            connection.execute(text("UPDATE users SET name = 'anne' WHERE id = 'u1'"))
            connection.execute(text("DELETE FROM users WHERE id = 'u1'"))
        # then definitions are the owner's alone
        with pytest.raises(Exception, match=r"must be owner|permission denied"), deps.db.engine.begin() as c:
            c.execute(text("DROP TABLE users"))
        assert deps.db.schema_is_current()
        # an idle pooled connection is closed by the server (the database may pause); the next use reconnects
        with deps.db.engine.connect() as connection:
            assert connection.execute(text("SHOW idle_session_timeout")).scalar() == "1s"
            before = connection.execute(text("SELECT pg_backend_pid()")).scalar()
        time.sleep(1.5)
        with deps.db.engine.connect() as connection:
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar() != before
    finally:
        dispose_all()
