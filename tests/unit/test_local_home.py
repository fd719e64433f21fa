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
