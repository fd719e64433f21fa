"""A worker resolves only its own kind of references: the stack's (GitHub token, agent credentials) and, for a
Product Owner, its own person's key; never a project's secrets, a server's key or another person's key. It
resolves them through the API with its own token (which enforces the same rule and the job's own refs);
a reference outside the rule is refused before the API is asked."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.api_client import AuthError
from shared.contracts.api import WorkerDetail
from shared.secrets.scope import worker_reference_allowed
from worker_image import wrapper as wrapper_module
from worker_image.wrapper import Wrapper, WrapperSettings


@pytest.mark.parametrize(
    ("reference", "po_user", "allowed"),
    [
        ("secret://github/token", None, True),
        ("secret://agents/anthropic", None, True),
        ("secret://arn:aws:secretsmanager:us-east-1:123456789012:secret:llm-key-AbCdEf", None, True),
        ("secret://po/u-1/api_key", "u-1", True),
        ("secret://po/u-2/api_key", "u-1", False),
        ("secret://po/u-1/api_key", None, False),
        ("secret://projects/p-1/DB_PASSWORD", None, False),
        ("secret://servers/web-1/ssh_key", None, False),
        ("secret://shared/fleet-key", None, False),
        ("secret://local/admin_api_key", None, False),
        ("not-a-reference", None, False),
    ],
)
def test_the_worker_rule(reference: str, po_user: str | None, allowed: bool) -> None:
    assert worker_reference_allowed(reference, po_user) is allowed


class _Api:
    def __init__(
        self, env_vars: dict[str, str], context: dict[str, str], secrets: dict[str, str] | None = None
    ) -> None:
        self.config = {"env_vars": env_vars, "context": context}
        self.secrets = secrets
        self.asked: list[list[str]] = []
        self.running = False

    def resolve_worker_secrets(self, worker_id: str, refs: list[str]) -> dict[str, str]:
        if self.secrets is None:
            raise AssertionError("a worker with a foreign reference must not ask the API for any secret")
        self.asked.append(refs)
        foreign = [ref for ref in refs if ref not in self.secrets]
        if foreign:
            raise AuthError(403, "forbidden", f"not this worker's secret reference: {foreign[0]}", ["refs"])
        return {ref: self.secrets[ref] for ref in refs}

    def get_worker(self, worker_id: str) -> WorkerDetail:
        return WorkerDetail(
            id=worker_id,
            task_id=None,
            agent="command",
            runtime_handle="local:1:w",
            status="STARTING",
            exit_reason=None,
            started_at=datetime.now(UTC),
            stopped_at=None,
            config=self.config,
            create_request_id="r",
        )

    def update_worker(self, worker_id: str, status: str, **_: Any) -> None:
        if self.secrets is None:
            raise AssertionError("a worker with a foreign reference must not report RUNNING")
        self.running = status == "RUNNING"


def test_a_worker_refuses_another_persons_server_key_before_reading_any_secret(tmp_path: Path) -> None:
    # given a worker whose job names a server's key (which no worker's job legitimately does)
    api = _Api({"GITHUB_TOKEN": "secret://servers/someone-elses/ssh_key"}, {})
    settings = WrapperSettings(worker_workspace_root=tmp_path)
    worker = Wrapper(api, "w-1", settings)  # type: ignore[arg-type]
    # when it loads its job, then it stops with one message, whether or not the secret exists
    with pytest.raises(PermissionError, match="GITHUB_TOKEN is missing or not this worker's to use"):
        worker.load_job()
    worker.cleanup()


def test_a_product_owner_worker_may_use_its_own_persons_key_only(tmp_path: Path) -> None:
    api = _Api({"ORCH_API_KEY": "secret://po/u-2/api_key"}, {"role": "product_owner", "user_id": "u-1"})
    worker = Wrapper(api, "w-1", WrapperSettings(worker_workspace_root=tmp_path))  # type: ignore[arg-type]
    with pytest.raises(PermissionError, match="ORCH_API_KEY"):
        worker.load_job()
    worker.cleanup()


def test_the_job_s_references_are_resolved_by_the_api_once_and_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a job on a GitHub repository naming the same GitHub token twice and an agent credential
    git_auth: list[tuple[str, str | None]] = []
    monkeypatch.setattr(wrapper_module, "use_token", lambda url, token: git_auth.append((url, token)))
    monkeypatch.setattr(wrapper_module, "checkout", lambda *args: None)
    api = _Api(
        {
            "GITHUB_TOKEN": "secret://github/token",
            "GH_TOKEN": "secret://github/token",
            "ANTHROPIC_API_KEY": "secret://agents/anthropic",
            "PLAIN": "not a reference",
        },
        {"repo_url": "https://github.com/acme/blog.git"},
        secrets={
            "secret://github/token": "ghp_resolved_value",
            "secret://agents/anthropic": "sk-ant-resolved",
        },
    )
    worker = Wrapper(api, "w-1", WrapperSettings(worker_workspace_root=tmp_path))  # type: ignore[arg-type]
    # when
    worker.load_job()
    # then: one call with each reference once; the agent gets the values (but the push token); they are
    # redacted from output
    assert api.asked == [["secret://agents/anthropic", "secret://github/token"]]
    assert git_auth == [("https://github.com/acme/blog.git", "ghp_resolved_value")]  # clone and push only
    assert worker.agent_env == {
        "GH_TOKEN": "ghp_resolved_value",
        "ANTHROPIC_API_KEY": "sk-ant-resolved",
        "PLAIN": "not a reference",
    }
    assert "ghp_resolved_value" not in worker.redactor.redact("pushed with ghp_resolved_value")
    assert "sk-ant-resolved" not in worker.redactor.redact("key sk-ant-resolved")
    assert api.running
    worker.cleanup()


def test_a_reference_the_api_refuses_stops_the_worker_naming_it(tmp_path: Path) -> None:
    # the worker rule allows the reference, but the API knows it is not in this worker's own config
    api = _Api({"ANTHROPIC_API_KEY": "secret://agents/other"}, {}, secrets={})
    worker = Wrapper(api, "w-1", WrapperSettings(worker_workspace_root=tmp_path))  # type: ignore[arg-type]
    with pytest.raises(PermissionError, match="secret://agents/other"):
        worker.load_job()
    assert not api.running
    worker.cleanup()
