"""A worker resolves only its own kind of references: the stack's (GitHub token, agent credentials) and, for a
Product Owner, its own person's key; never a project's secrets, a server's key or another person's key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.contracts.api import WorkerDetail
from shared.secrets.scope import worker_reference_allowed
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
    def __init__(self, env_vars: dict[str, str], context: dict[str, str]) -> None:
        self.config = {"env_vars": env_vars, "context": context}

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
        raise AssertionError("a worker with a foreign reference must not report RUNNING")


def test_a_worker_refuses_another_persons_server_key_before_reading_any_secret(tmp_path: Path) -> None:
    # given a worker whose job names a server's key (which no worker's job legitimately does)
    secrets_file = tmp_path / "secrets.json"
    api = _Api({"GITHUB_TOKEN": "secret://servers/someone-elses/ssh_key"}, {})
    settings = WrapperSettings(api_key="k", worker_workspace_root=tmp_path, secrets_file=secrets_file)
    worker = Wrapper(api, "w-1", settings)  # type: ignore[arg-type]
    # when it loads its job, then it stops with one message, whether or not the secret exists
    with pytest.raises(PermissionError, match="GITHUB_TOKEN is missing or not this worker's to use"):
        worker.load_job()
    worker.cleanup()


def test_a_product_owner_worker_may_use_its_own_persons_key_only(tmp_path: Path) -> None:
    api = _Api({"ORCH_API_KEY": "secret://po/u-2/api_key"}, {"role": "product_owner", "user_id": "u-1"})
    worker = Wrapper(api, "w-1", WrapperSettings(api_key="k", worker_workspace_root=tmp_path))  # type: ignore[arg-type]
    with pytest.raises(PermissionError, match="ORCH_API_KEY"):
        worker.load_job()
    worker.cleanup()
