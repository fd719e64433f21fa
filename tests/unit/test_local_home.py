"""`local down|status|up` read ORCH_HOME without pydantic-settings: the same answer as `HomeSettings`."""

from __future__ import annotations

import os

import pytest

from cli.local.serve import stack_home
from shared.settings import HomeSettings


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"ORCH_HOME": "/srv/orch"},
        {"orch_home": "~/elsewhere"},
        {"Orch_Home": "relative/dir"},
        {"ORCH_HOME": ""},
    ],
)
def test_home_is_what_the_settings_read(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    for name in [n for n in os.environ if n.lower() == "orch_home"]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    assert stack_home() == HomeSettings().home


def test_the_data_dirs_database_is_the_file_the_stack_looks_for(tmp_path: os.PathLike[str]) -> None:
    """`EmbeddedStack` starts migrating a new data dir's database before it loads the settings; it must look
    at the file the settings name."""
    from pathlib import Path

    from cli.local.stack import DATABASE_FILE
    from shared.settings import DatabaseSettings

    home = Path(tmp_path)
    assert DatabaseSettings(home=home).effective_database_url == f"sqlite:///{home / DATABASE_FILE}"


def test_the_logins_the_stack_looks_for_are_the_settings_that_choose_postgresql(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`EmbeddedStack` reads the environment for a PostgreSQL login before it loads the settings (to know
    whether a new data dir's SQLite file will be used): each name it looks for is an `ApiSettings` field,
    read from the environment in any case, that `deps.database_login` takes before `database_url`."""
    from pathlib import Path

    from cli.local.stack import DATABASE_LOGINS, _database_login_set
    from functions.api.settings import ApiSettings

    for name in [n for n in os.environ if n.lower() in DATABASE_LOGINS]:
        monkeypatch.delenv(name)
    assert not _database_login_set()
    for env_name in DATABASE_LOGINS:
        field = env_name.removeprefix("orch_")
        with monkeypatch.context() as patch:
            patch.setenv(env_name.upper(), "set")
            assert _database_login_set()
            assert getattr(ApiSettings(home=Path(tmp_path)), field) == "set"
