"""`local down|status|up` read ORCH_HOME without pydantic-settings: the same answer as `HomeSettings`."""

from __future__ import annotations

import os

import pytest

from cli.commands_local import _home
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

    assert _home() == HomeSettings().home


def test_the_data_dirs_database_is_the_file_the_stack_looks_for(tmp_path: os.PathLike[str]) -> None:
    """`EmbeddedStack` starts migrating a new data dir's database before it loads the settings; it must look
    at the file the settings name."""
    from pathlib import Path

    from cli.local.stack import DATABASE_FILE
    from shared.settings import DatabaseSettings

    home = Path(tmp_path)
    assert DatabaseSettings(home=home).effective_database_url == f"sqlite:///{home / DATABASE_FILE}"
