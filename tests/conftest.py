"""Every test runs with a private ORCH_HOME, no ORCH_* settings leaking in, and dummy AWS credentials."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_URL_ENV = "ORCH_TEST_POSTGRES_URL"


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
