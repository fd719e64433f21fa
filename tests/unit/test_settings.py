from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.settings import Settings, get_settings


def test_defaults_live_under_orch_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORCH_HOME", str(tmp_path))
    settings = Settings()
    assert settings.queue_backend == "local"
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'orchestrator.db'}"
    assert settings.effective_queue_file == tmp_path / "queue.db"


def test_home_defaults_to_dot_orchestrator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCH_HOME")
    assert Settings().home == Path("~/.orchestrator").expanduser()


def test_env_prefix_is_orch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_QUEUE_BACKEND", "sqs")
    monkeypatch.setenv("ORCH_QUEUE_PREFIX", "prod")
    monkeypatch.setenv("ORCH_DATABASE_URL", "postgresql+pg8000://u@h/db")
    settings = Settings()
    assert (settings.queue_backend, settings.queue_prefix) == ("sqs", "prod")
    assert settings.effective_database_url == "postgresql+pg8000://u@h/db"


@pytest.mark.parametrize(
    ("key", "value"),
    [("ORCH_QUEUE_BACKEND", "redis"), ("ORCH_QUEUE_PREFIX", "bad:prefix"), ("ORCH_QUEUE_MAX_RECEIVES", "0")],
)
def test_invalid_values_fail_at_validation_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert key.removeprefix("ORCH_").lower() in str(info.value)


def test_settings_are_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("ORCH_QUEUE_PREFIX", "changed")
    assert get_settings() is first


def test_agent_credentials_are_references_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from shared.settings import AgentCredentialSettings

    monkeypatch.setenv("ORCH_AGENT_SECRET_REFS", '{"ANTHROPIC_API_KEY": "secret://agents/anthropic"}')
    assert AgentCredentialSettings().agent_secret_refs == {"ANTHROPIC_API_KEY": "secret://agents/anthropic"}
    monkeypatch.setenv("ORCH_AGENT_SECRET_REFS", '{"ANTHROPIC_API_KEY": "sk-ant-the-value-itself"}')
    with pytest.raises(ValidationError, match="must be a secret:// reference"):
        AgentCredentialSettings()
    monkeypatch.setenv("ORCH_AGENT_SECRET_REFS", '{"bad name": "secret://x"}')
    with pytest.raises(ValidationError, match="not an environment variable name"):
        AgentCredentialSettings()


def test_engineering_workers_get_the_agent_credentials_by_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.engineering.handler import build_engine
    from functions.engineering.settings import EngineeringSettings

    monkeypatch.setenv("ORCH_AGENT_SECRET_REFS", '{"ANTHROPIC_API_KEY": "secret://agents/anthropic"}')
    monkeypatch.setenv("ORCH_API_KEY", "k")
    engine = build_engine(EngineeringSettings())
    assert engine.ports.worker_env_refs == {"ANTHROPIC_API_KEY": "secret://agents/anthropic"}
