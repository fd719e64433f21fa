"""Every test runs with a private ORCH_HOME, no ORCH_* settings leaking in, and dummy AWS credentials."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

POSTGRES_URL_ENV = "ORCH_TEST_POSTGRES_URL"

ONE_WORKER_SUITES = ("tests/cloud/", "tests/images/")
"""Suites whose modules share one machine-wide thing: tests/cloud's rehearsals (one at a time keeps their
pollers, ssh hosts and moto servers off each other's back), tests/images' session of image builds."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist's `--dist loadscope` (CI runs `-n 2 --dist loadscope --no-loadscope-reorder`), a
    work unit is a whole module, so its module-scoped stacks start once and its tests keep their order; each
    suite of ONE_WORKER_SUITES is one unit. (xdist's own `xdist_group` marks do not group under pytest 9.2:
    they rename `item._nodeid`, which pytest no longer reads.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SuiteScopes(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            suite = next((s for s in ONE_WORKER_SUITES if nodeid.startswith(s)), None)
            return suite or str(super()._split_scope(nodeid))

    return SuiteScopes(config, log)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("ORCH_") and key != POSTGRES_URL_ENV:
            monkeypatch.delenv(key)
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "orch-home"))
    # the fake agents keep sessions where the real ones do: never in the real home directory
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude-config"))
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    from shared.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def postgres_url() -> str:
    """The real PostgreSQL, from ORCH_TEST_POSTGRES_URL (set by .ci/run); skipped visibly without it."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set: no PostgreSQL to test against (CI sets it)")
    return url
