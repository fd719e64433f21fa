"""The one bootstrap sequence (functions.migrations.bootstrap) as the embedded stack uses it.

The deploy hook's side (AWS secrets, rotation, rollback) is in tests/infrastructure/test_deploy_hook*.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from cli.local.stack import SERVICE_KEY_REF
from functions.api.migrations import HEAD_REVISION
from functions.migrations.bootstrap import ServiceKey, bootstrap
from shared.api_client import ApiClient, AuthError
from shared.secrets.local import LocalSecrets
from tests.embedded_support import start_stack


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Any]:
    from functions.api.db import dispose_all, get_database

    yield get_database(f"sqlite:///{tmp_path / 'orchestrator.db'}")
    dispose_all()


def _live_keys(db: Any, name: str) -> int:
    with db.session() as session:
        query = text("SELECT count(*) FROM api_keys WHERE name = :name AND revoked_at IS NULL")
        return int(session.execute(query, {"name": name}).scalar_one())


def test_a_new_database_is_migrated_and_seeded(db: Any) -> None:
    outcome = bootstrap(db, "a" * 64, ServiceKey("s" * 64, "embedded-stack", revoke_previous=False))
    assert outcome.model_dump(exclude_none=True) == {
        "revision": HEAD_REVISION,
        "admin": "created",
        "service_key": "created",
    }


def test_seed_when_ahead_seeds_a_database_ahead_of_this_code_and_the_default_does_not(db: Any) -> None:
    # given a database migrated by newer code (a revision these scripts do not know)
    bootstrap(db)
    with db.session() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '9999_from_newer_code'"))

    # when the deploy hook's default runs, nothing is seeded
    skipped = bootstrap(db, "a" * 64)
    assert skipped.skipped and skipped.admin is None and skipped.revision == "9999_from_newer_code"

    # and the embedded stack's start seeds all the same (it serves that database like the API does)
    seeded = bootstrap(db, "a" * 64, seed_when_ahead=True)
    assert seeded.skipped is None and seeded.admin == "created" and seeded.revision == "9999_from_newer_code"


def test_a_new_key_value_keeps_the_earlier_keys_unless_told_to_revoke_them(db: Any) -> None:
    bootstrap(db, service_key=ServiceKey("s" * 64, "embedded-stack", revoke_previous=False))
    kept = bootstrap(db, service_key=ServiceKey("t" * 64, "embedded-stack", revoke_previous=False))
    assert kept.service_key == "created" and _live_keys(db, "embedded-stack") == 2

    rotated = bootstrap(db, service_key=ServiceKey("u" * 64, "embedded-stack"))
    assert rotated.service_key == "rotated" and _live_keys(db, "embedded-stack") == 1


def test_the_embedded_stack_replaces_a_revoked_service_key_on_its_next_start(embedded_home: Path) -> None:
    # given a stack whose service key an admin revoked
    first = start_stack(embedded_home)
    try:
        old_key = LocalSecrets(embedded_home / "secrets.json").get(SERVICE_KEY_REF)
        with ApiClient(first.server.url, old_key) as service:
            assert service.me().name == "orchestrator-service"
        with ApiClient(first.server.url, first.admin_key) as admin:
            service_user = next(u for u in admin.list_users() if u.name == "orchestrator-service")
            (key,) = [k for k in admin.list_api_keys(service_user.id) if k.name == "embedded-stack"]
            admin.revoke_api_key(key.id)
    finally:
        first.stop()

    # when it starts again
    second = start_stack(embedded_home)
    try:
        # then its functions hold a new, live service key
        new_key = LocalSecrets(embedded_home / "secrets.json").get(SERVICE_KEY_REF)
        assert new_key != old_key
        with ApiClient(second.server.url, new_key) as service:
            assert service.me().name == "orchestrator-service"
        with ApiClient(second.server.url, old_key) as stale, pytest.raises(AuthError):
            stale.me()
    finally:
        second.stop()
