"""The agent process gets no cloud credentials and no orchestrator keys but the ones its job grants.

The wrapper runs in a container whose environment holds the task role's credentials (ECS puts the
credentials endpoint in AWS_CONTAINER_CREDENTIALS_RELATIVE_URI), the stack's ORCH_ settings and the
wrapper's own token (ORCH_WORKER_TOKEN). A fake agent that dumps its environment is run through the real wrapper
(job loading, secret resolution, `run_agent`) and must see none of them; the Product Owner's
user-scope key, granted by the job's `env_vars`, still arrives.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import pytest

from shared.contracts.api import WorkerDetail, WorkerMessage
from tests.worker_factories import worker_detail, worker_message
from worker_image.wrapper import Wrapper, WrapperSettings

FAKES = Path(__file__).resolve().parents[1] / "fakes" / "agents"
PERSON_KEY = "orch_person_key_0123456789"
WRAPPER_KEY = "orch_wrapper_service_key_0123456789"
WORKER_TOKEN = "orchw_the_wrappers_own_token_0123456789"

CONTAINER_ENV = {
    # the task role, as ECS / EKS / a developer's shell hand it over
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
    "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEJr",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/7f3e2a",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN": "Basic abc",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "/var/run/secrets/pods.eks.amazonaws.com/token",
    "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks.amazonaws.com/token",
    "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/worker",
    "AWS_PROFILE": "prod-admin",
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE",
    "ECS_CONTAINER_METADATA_URI": "http://169.254.170.2/v3/abc",
    "ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/abc",
    # the wrapper's own settings and credentials
    "ORCH_SERVICE_API_KEY_REF": "secret://stack/service-key",
    "ORCH_API_KEY": WRAPPER_KEY,
    "ORCH_WORKER_TOKEN": WORKER_TOKEN,
    "ORCH_API_URL": "http://wrapper-only.invalid",
    "ORCH_DATABASE_URL": "postgresql+pg8000://orch:pw@db/orch",
    "ORCH_SESSION_BUCKET": "stack-sessions",
    "ORCH_QUEUE_BACKEND": "sqs",
    "ORCH_SECRETS_BACKEND": "local",
    # secret-looking values a developer's shell may hold
    "GITHUB_TOKEN": "ghp_developer",
    "ANTHROPIC_API_KEY": "sk-ant-developer",
    "SSH_AUTH_SOCK": "/tmp/ssh-agent.sock",
    # what the agent CLIs need, kept
    "LANG": "C.UTF-8",
    "HTTPS_PROXY": "http://proxy.internal:3128",
    "NODE_OPTIONS": "--max-old-space-size=4096",
    "CLAUDE_CONFIG_DIR": "/home/agent/.claude",
}


class _Api:
    def __init__(self, detail: WorkerDetail, secrets: dict[str, str]) -> None:
        self.detail = detail
        self.secrets = secrets
        self.results: list[dict[str, Any]] = []

    def resolve_worker_secrets(self, worker_id: str, refs: list[str]) -> dict[str, str]:
        return {ref: self.secrets[ref] for ref in refs}

    def get_worker(self, worker_id: str) -> WorkerDetail:
        return self.detail

    def update_worker(self, worker_id: str, status: str, **_: Any) -> None:
        """Status reports are not what this test reads."""

    def append_events(self, task_id: str, events: list[dict[str, Any]]) -> None:
        """Progress events are not what this test reads."""

    def worker_message_result(self, message_id: int, success: bool, **kwargs: Any) -> None:
        self.results.append({"success": success, **kwargs})


def _detail(dump: Path) -> WorkerDetail:
    return worker_detail(
        id="w-po",
        runtime_handle="ecs:task/1",
        config={
            "context": {"role": "product_owner", "user_id": "u1"},
            "agent_options": {"command": f"{shlex.quote(str(FAKES / 'env-agent'))} {shlex.quote(str(dump))}"},
            # what the Product Owner grants its agent (functions/product_owner/logic.py)
            "env_vars": {
                "ORCH_API_URL": "http://api.example/",
                "ORCH_API_KEY": "secret://po/u1/api_key",
                "ANTHROPIC_API_KEY": "secret://agents/anthropic",
                "GITHUB_TOKEN": "secret://github/token",  # the wrapper's, for pushes
            },
        },
    )


def _message() -> WorkerMessage:
    return worker_message(worker_id="w-po", request_id="po:tg:1")


def test_the_agent_sees_no_cloud_credentials_and_only_the_granted_orchestrator_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a container environment full of credentials, and the job's references in the secret store
    for name, value in CONTAINER_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ORCH_WORKER_ID", "w-po")
    secrets = {
        "secret://po/u1/api_key": PERSON_KEY,
        "secret://agents/anthropic": "sk-ant-granted",
        "secret://github/token": "ghp_the_jobs_push_token",
    }
    dump = tmp_path / "agent-env.json"
    api = _Api(_detail(dump), secrets)
    settings = WrapperSettings(worker_workspace_root=tmp_path / "work")
    wrapper = Wrapper(api, "w-po", settings)  # type: ignore[arg-type]

    # when
    try:
        wrapper.load_job()
        wrapper.handle(_message())
    finally:
        wrapper.cleanup()

    # then
    assert api.results and api.results[0]["success"], api.results
    seen: dict[str, str] = json.loads(dump.read_text())
    leaked = sorted(k for k in seen if k.upper().startswith(("AWS_", "ECS_")))
    assert leaked == [], f"cloud settings reached the agent: {leaked}"
    granted_orch = {
        "ORCH_API_URL",
        "ORCH_API_KEY",
        "ORCH_TASK_FILE",
        "ORCH_AGENT_SESSION_DIR",
        "ORCH_WORKER_ID",
    }
    assert sorted(k for k in seen if k.startswith("ORCH_") and k not in granted_orch) == []
    assert seen["ORCH_API_KEY"] == PERSON_KEY and seen["ORCH_API_URL"] == "http://api.example/"
    assert seen["ANTHROPIC_API_KEY"] == "sk-ant-granted"  # the agent's own credential, by reference
    assert WRAPPER_KEY not in json.dumps(seen) and WORKER_TOKEN not in json.dumps(seen)
    assert "GITHUB_TOKEN" not in seen and "SSH_AUTH_SOCK" not in seen
    assert "ghp_the_jobs_push_token" not in json.dumps(seen)  # the job's push token stays with the wrapper
    assert seen.get("PATH") and seen.get("HOME") == os.environ["HOME"]  # (a python3 shim may extend PATH)
    for kept in ("LANG", "HTTPS_PROXY", "NODE_OPTIONS", "CLAUDE_CONFIG_DIR"):
        assert seen.get(kept) == CONTAINER_ENV[kept], kept
    assert seen["ORCH_WORKER_ID"] == "w-po"
