"""The model endpoint and models reach the workers in AWS: `-c agent_env='{...}'` lands on the worker
container's environment (the wrapper reads the ORCH_*_MODEL ones, the agent inherits the others); a
credential is refused there, since the value would be written into the template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App

from infra_cdk.config import ConfigError, StackConfig
from tests.infrastructure.conftest import DEFAULT_CONTEXT, Synthesized, synthesize

AGENT_ENV = {
    "ANTHROPIC_BASE_URL": "https://llm-gateway.example.com",
    "ORCH_CLAUDE_MODEL": "claude-sonnet-4-5",
}


def _worker_env(app: Synthesized) -> dict[str, Any]:
    for props in (r["Properties"] for r in app.resources("AWS::ECS::TaskDefinition").values()):
        for container in props["ContainerDefinitions"]:
            if container["Name"] == "worker":
                return {pair["Name"]: pair["Value"] for pair in container.get("Environment", [])}
    raise AssertionError("no worker container")


def test_agent_env_is_set_on_the_worker_container(tmp_path: Path, default_app: Synthesized) -> None:
    app = synthesize(tmp_path, {**DEFAULT_CONTEXT, "agent_env": json.dumps(AGENT_ENV)})
    env = _worker_env(app)
    assert env == AGENT_ENV  # and nothing else: the worker asks the API for its job, secrets and session
    assert not set(AGENT_ENV) & set(_worker_env(default_app))


@pytest.mark.parametrize(
    "value",
    [
        {"ANTHROPIC_API_KEY": "sk-ant-123"},
        {"ANTHROPIC_AUTH_TOKEN": "abc"},
        {"ANTHROPIC_BASE_URL": "secret://agents/url"},
        {"lower": "x"},
        {"ANTHROPIC_BASE_URL": ["x"]},
    ],
)
def test_a_credential_or_a_bad_name_is_refused(value: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="agent_env"):
        StackConfig.from_context(App(context={**DEFAULT_CONTEXT, "agent_env": json.dumps(value)}).node)


def test_agent_env_from_cdk_json_as_a_dict() -> None:
    config = StackConfig.from_context(App(context={**DEFAULT_CONTEXT, "agent_env": AGENT_ENV}).node)
    assert dict(config.agent_env) == AGENT_ENV
