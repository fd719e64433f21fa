"""On UPDATE_ROLLBACK CloudFormation re-runs the *previous* deploy hook, after the new one migrated: the
database is ahead of that code. The hook must succeed and change nothing; the API must keep serving.

"Older code" is simulated by a copy of the migrations without the newest script, which Alembic is pointed
at. Before the fix the hook failed with Alembic's "Can't locate revision" (the stack ended
UPDATE_ROLLBACK_FAILED) and the API answered 503 schema_out_of_date. SQLite and the real PostgreSQL.
"""

from __future__ import annotations

import ast
import importlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from functions.api import migrate
from functions.api.migrations import HEAD_REVISION
from functions.migrations.settings import DeployHookSettings
from infra_cdk import constants
from tests.api_support import build_deps, drop_postgres_database, fresh_postgres_database, install

ADMIN_REF = "secret://stack/admin-key"
SERVICE_REF = "secret://stack/service-key"
VERSIONS = migrate.MIGRATIONS_DIR / "versions"


@pytest.fixture(scope="module")
def hook() -> ModuleType:
    return importlib.import_module(constants.DEPLOY_HOOK_HANDLER.rpartition(".")[0])


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
        engine = create_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url
        return
    admin_url = request.getfixturevalue("postgres_url")
    url = fresh_postgres_database(admin_url)  # migrated to head
    try:
        yield url
    finally:
        from functions.api.db import dispose_all

        dispose_all()
        drop_postgres_database(admin_url, url)


@pytest.fixture
def older_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Alembic pointed at the migrations minus the newest script; returns that older code's head."""
    scripts = sorted(p for p in VERSIONS.glob("[0-9]*.py"))
    older = tmp_path / "older-migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, older, ignore=shutil.ignore_patterns("__pycache__"))
    (older / "versions" / scripts[-1].name).unlink()
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", older)
    return scripts[-2].stem


def _state(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                "revision": conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one(),
                "users": conn.execute(text("SELECT count(*) FROM users")).scalar_one(),
                "api_keys": conn.execute(text("SELECT count(*) FROM api_keys")).scalar_one(),
            }
    finally:
        engine.dispose()


def test_the_previous_hook_succeeds_on_a_database_ahead_of_it_and_changes_nothing(
    hook: ModuleType, database_url: str, older_code: str, tmp_path: Path
) -> None:
    from functions.api.db import get_database
    from functions.api.deps import ApiDeps
    from shared.secrets.local import LocalSecrets

    # given: the database at the new head, and the previous code's hook
    before = _state(database_url)
    assert before["revision"] == HEAD_REVISION != older_code
    assert migrate.head_revision() == older_code
    settings = DeployHookSettings(
        home=tmp_path,
        database_url=database_url,
        bootstrap_admin_key_ref=ADMIN_REF,
        service_api_key_ref=SERVICE_REF,
    )
    secrets = LocalSecrets(tmp_path / "secrets.json")
    secrets.put(ADMIN_REF, "a" * 64)
    secrets.put(SERVICE_REF, "s" * 64)
    deps = ApiDeps(get_database(database_url), settings, lambda: None, lambda: secrets)  # type: ignore[arg-type,return-value]

    # when: CloudFormation runs it on UPDATE_ROLLBACK
    outcome = hook.on_deploy({"RequestType": "Update"}, None, deps=deps, settings=settings)

    # then: success, and the database as it was (no migration, no key written by the older models)
    assert outcome["revision"] == HEAD_REVISION
    assert (
        "ahead of this code" in outcome["skipped"] and "admin" not in outcome and "service_key" not in outcome
    )
    assert _state(database_url) == before


def test_upgrade_leaves_a_database_ahead_of_its_scripts_alone(database_url: str, older_code: str) -> None:
    engine = create_engine(database_url)
    try:
        assert migrate.revision_ahead(engine) == HEAD_REVISION
        assert (
            migrate.upgrade(engine) == HEAD_REVISION
        )  # the CLI's `db upgrade` too: no "Can't locate revision"
    finally:
        engine.dispose()
    assert _state(database_url)["revision"] == HEAD_REVISION


def test_a_current_database_is_not_ahead(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert migrate.revision_ahead(engine) is None
    finally:
        engine.dispose()


def test_the_api_serves_a_database_ahead_of_its_code(database_url: str, tmp_path: Path) -> None:
    # given: a database at a revision this code does not know (newer code migrated it; this code came back)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_newer_code'"))
    engine.dispose()
    api = install(build_deps(database_url, tmp_path / "home"))

    # then: it serves, and says where the schema is
    assert api.get("/projects").status == 200
    health = api.as_key(None).get("/health")
    assert health.status == 200 and health.body["database"] == "ok"
    assert health.body["schema_revision"] == "9999_from_newer_code"
    assert health.body["expected_revision"] == HEAD_REVISION


def test_the_api_still_refuses_a_database_behind_its_code(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'behind.db'}"
    engine = create_engine(url)
    migrate.upgrade(engine, sorted(p.stem for p in VERSIONS.glob("[0-9]*.py"))[-2])
    engine.dispose()
    api = install(build_deps(url, tmp_path / "home"))
    assert api.get("/projects").status == 503


# -- what makes serving an older release on a newer schema safe -------------------------------------------


def test_script_file_names_are_their_revision_ids() -> None:
    """`functions.api.db.known_revisions` reads the file names (no Alembic at cold start)."""
    from functions.api.db import known_revisions

    for path in VERSIONS.glob("[0-9]*.py"):
        assert f'revision = "{path.stem}"' in path.read_text(), path.name
    assert HEAD_REVISION in known_revisions() and len(known_revisions()) == len(
        list(VERSIONS.glob("[0-9]*.py"))
    )


LOOSENINGS = {
    # the unique (server, project) index becomes unique (server, project, slot): a looser constraint, and the
    # previous release writes only slot "" (the column's server default), so it still holds one port per
    # project and finds it (its lookup orders by created_at: the stable port is the project's first)
    ("0010_releases", "drop_index"),
}
"""(script, call) pairs an upgrade may make because they loosen, never tighten, what older code relies on."""


@pytest.mark.parametrize("script", sorted(VERSIONS.glob("[0-9]*.py")), ids=lambda p: p.stem)
def test_migrations_only_expand_the_schema(script: Path) -> None:
    """The previous release keeps working on the new schema only if upgrades drop, rename and tighten
    nothing, and every new NOT NULL column has a server default (older code does not write it)."""
    tree = ast.parse(script.read_text())
    (upgrade,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"]
    for call in (n for n in ast.walk(upgrade) if isinstance(n, ast.Call)):
        name = getattr(call.func, "attr", getattr(call.func, "id", ""))
        if (script.stem, name) in LOOSENINGS:
            continue
        assert name not in {
            "drop_column",
            "drop_table",
            "alter_column",
            "rename_table",
            "drop_constraint",
            "drop_index",
            "execute",
        }, f"{script.name}: {name} in upgrade()"
        if name == "add_column":
            (column,) = [a for a in call.args if isinstance(a, ast.Call)]
            keywords = {k.arg: k.value for k in column.keywords}
            not_null = (
                isinstance(keywords.get("nullable"), ast.Constant) and keywords["nullable"].value is False
            )
            assert not not_null or "server_default" in keywords, (
                f"{script.name}: NOT NULL column without default"
            )
