"""The deploy hook the CDK trigger runs: migrations, the first admin, the service key (on SQLite here).

The test imports the module the stack names as the hook's handler (`constants.DEPLOY_HOOK_HANDLER`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from functions.migrations.settings import DeployHookSettings
from infra_cdk import constants

ADMIN_REF = "secret://stack/admin-key"
SERVICE_REF = "secret://stack/service-key"


@pytest.fixture(scope="module")
def hook() -> ModuleType:
    module_name, _, _ = constants.DEPLOY_HOOK_HANDLER.rpartition(".")
    return importlib.import_module(module_name)


@pytest.fixture
def world(hook: ModuleType, tmp_path: Path) -> Iterator[dict[str, Any]]:
    from functions.api.db import dispose_all, get_database
    from functions.api.deps import ApiDeps
    from shared.secrets.local import LocalSecrets

    settings = DeployHookSettings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'orchestrator.db'}",
        bootstrap_admin_key_ref=ADMIN_REF,
        service_api_key_ref=SERVICE_REF,
    )
    secrets = LocalSecrets(tmp_path / "secrets.json")
    secrets.put(ADMIN_REF, "a" * 64)
    secrets.put(SERVICE_REF, "s" * 64)
    deps = ApiDeps(get_database(settings.effective_database_url), settings, lambda: None, lambda: secrets)  # type: ignore[arg-type,return-value]
    yield {"settings": settings, "secrets": secrets, "deps": deps}
    dispose_all()


def _principal(deps: Any, key: str) -> Any:
    from functions.api import auth

    with deps.db.session() as session:
        return auth.authenticate(session, key)


def test_handler_named_by_the_stack_is_the_hook_entry_point(hook: ModuleType) -> None:
    assert constants.DEPLOY_HOOK_HANDLER == f"{hook.__name__}.on_deploy"
    assert callable(hook.on_deploy)


def test_first_deploy_migrates_and_seeds_the_admin_and_the_service_key(
    hook: ModuleType, world: dict[str, Any]
) -> None:
    from functions.api.migrations import HEAD_REVISION

    # when
    outcome = hook.on_deploy({}, None, deps=world["deps"], settings=world["settings"])

    # then
    assert outcome == {"revision": HEAD_REVISION, "admin": "created", "service_key": "created"}
    admin = _principal(world["deps"], "a" * 64)
    assert admin.is_admin and "admin" in admin.scopes
    service = _principal(world["deps"], "s" * 64)
    assert not service.is_admin and service.scopes == frozenset({"service"}) and service.is_service


def test_a_second_deploy_changes_nothing(hook: ModuleType, world: dict[str, Any]) -> None:
    hook.on_deploy({}, None, deps=world["deps"], settings=world["settings"])
    outcome = hook.on_deploy({}, None, deps=world["deps"], settings=world["settings"])
    assert outcome["admin"] == "present" and outcome["service_key"] == "present"


def test_a_new_service_key_value_replaces_and_revokes_the_old_one(
    hook: ModuleType, world: dict[str, Any]
) -> None:
    from functions.api.errors import Unauthorized

    hook.on_deploy({}, None, deps=world["deps"], settings=world["settings"])
    world["secrets"].put(SERVICE_REF, "t" * 64)

    outcome = hook.on_deploy({}, None, deps=world["deps"], settings=world["settings"])

    assert outcome["service_key"] == "rotated"
    assert _principal(world["deps"], "t" * 64).is_service
    with pytest.raises(Unauthorized, match="revoked"):
        _principal(world["deps"], "s" * 64)


def test_a_key_revoked_through_the_api_is_not_revived_and_does_not_fail_the_deploy(
    hook: ModuleType, world: dict[str, Any]
) -> None:
    from sqlalchemy import update

    from functions.api import auth
    from functions.api.models import ApiKey, utcnow

    hook.on_deploy({}, None, deps=world["deps"], settings=world["settings"])
    with world["deps"].db.session() as session:
        session.execute(
            update(ApiKey).where(ApiKey.key_hash == auth.hash_key("s" * 64)).values(revoked_at=utcnow())
        )

    outcome = hook.on_deploy({}, None, deps=world["deps"], settings=world["settings"])

    assert outcome["service_key"] == "revoked"


def test_an_unreachable_database_fails_after_the_given_attempts(hook: ModuleType, tmp_path: Path) -> None:
    settings = DeployHookSettings(home=tmp_path, database_url="postgresql+pg8000://u:p@127.0.0.1:9/none")
    with pytest.raises(RuntimeError, match="after 2 attempts"):
        hook.wait_for_database(settings, attempts=2, delay_s=0)
