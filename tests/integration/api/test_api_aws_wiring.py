"""How the API finds its database password and first admin key in AWS: Secrets Manager references."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
from moto import mock_aws
from sqlalchemy.engine import make_url

from functions.api.db import url_from_rds_secret
from functions.api.deps import build_deps, set_deps
from functions.api.settings import ApiSettings
from tests.api_support import ApiHarness, drop_postgres_database, fresh_postgres_database


def test_rds_secret_becomes_a_pg8000_url() -> None:
    url = url_from_rds_secret(
        json.dumps(
            {
                "username": "orch",
                "password": "p@ss:w/rd",
                "host": "db.internal",
                "port": 5432,
                "dbname": "orchestrator",
                "engine": "postgres",
            }
        )
    )
    parsed = make_url(url)
    assert parsed.drivername == "postgresql+pg8000"
    assert (parsed.username, parsed.password, parsed.host, parsed.database) == (
        "orch",
        "p@ss:w/rd",
        "db.internal",
        "orchestrator",
    )


def test_api_reads_db_credentials_and_bootstrap_key_from_secrets_manager(
    postgres_url: str, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    database = fresh_postgres_database(postgres_url)
    try:
        target = make_url(database)
        with mock_aws():
            client = boto3.client("secretsmanager", region_name="us-east-1")
            rds = client.create_secret(
                Name="rds!db-1234",
                SecretString=json.dumps(
                    {
                        "username": target.username,
                        "password": target.password or "",
                        "host": target.host,
                        "port": target.port or 5432,
                        "dbname": target.database,
                    }
                ),
            )["ARN"]
            client.create_secret(
                Name="orch/bootstrap/admin_key", SecretString="orch_from_secrets_manager_key"
            )
            for key, value in {
                "ORCH_SECRETS_BACKEND": "aws",
                "ORCH_AWS_REGION": "us-east-1",
                "ORCH_DATABASE_SECRET_REF": f"secret://{rds}",
                "ORCH_BOOTSTRAP_ADMIN_KEY_REF": "secret://bootstrap/admin_key",
            }.items():
                monkeypatch.setenv(key, value)
            deps = build_deps(ApiSettings())
            assert deps.db.engine.url.database == target.database
            api = ApiHarness(deps, key="orch_from_secrets_manager_key")
            set_deps(deps)
            me = api.get("/me")
            assert me.status == 200 and me.body["is_admin"] is True
            set_deps(None)
            deps.db.engine.dispose()
    finally:
        drop_postgres_database(postgres_url, database)


def test_a_rotated_database_secret_is_read_again_when_the_login_is_refused(
    postgres_url: str, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """The container cached credentials that no longer work (rotation): the next connection re-reads them."""
    from functions.api.db import dispose_all
    from shared.secrets.local import LocalSecrets

    database = fresh_postgres_database(postgres_url)
    try:
        target = make_url(database)
        secrets = LocalSecrets(tmp_path / "secrets.json")
        stale = {
            "username": "rotated_away_user",
            "password": "old",
            "host": target.host,
            "port": target.port or 5432,
            "dbname": target.database,
        }
        secrets.put("secret://rds/credentials", json.dumps(stale))
        for key, value in {
            "ORCH_SECRETS_FILE": str(tmp_path / "secrets.json"),
            "ORCH_DATABASE_SECRET_REF": "secret://rds/credentials",
        }.items():
            monkeypatch.setenv(key, value)
        deps = build_deps(ApiSettings())
        secrets.put("secret://rds/credentials", json.dumps({**stale, "username": target.username}))  # rotated
        assert deps.db.schema_revision() is not None, "connected with the re-read secret"
    finally:
        dispose_all()
        drop_postgres_database(postgres_url, database)


def test_auth_failures_are_recognised() -> None:
    from functions.api.db import is_auth_failure

    refused = Exception({"S": "FATAL", "C": "28P01", "M": "password authentication failed"})
    assert is_auth_failure(refused)
    assert not is_auth_failure(Exception({"C": "57P03", "M": "the database system is starting up"}))
    assert not is_auth_failure(ConnectionRefusedError("nothing listens"))
