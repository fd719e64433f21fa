"""`orchestrator run` follows the deploy already in progress instead of failing on 409 (issue 16,
item 11): re-running right after a crash mid-deploy found the project's deploy still RUNNING."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from cli import commands_run
from cli.main import app
from shared.api_client import ConflictError
from shared.contracts.api import Page, Task, TaskStatus, TaskType

NOW = datetime.now(UTC)


def _task(
    task_id: str, type_: TaskType, status: TaskStatus, result: dict[str, Any] | None = None, age_s: int = 0
) -> Task:
    return Task(
        id=task_id,
        project_id="p-1",
        user_id="u-1",
        type=type_,
        status=status,
        spec=None,
        attempt=1,
        result=result,
        error=None,
        correlation_id="c",
        created_at=NOW - timedelta(seconds=age_s),
        started_at=None,
        finished_at=None,
        heartbeat_at=None,
    )


class FakeApi:
    """The calls `run` makes; the project's earlier deploy is still RUNNING."""

    def __init__(self, running_deploys: list[Task]) -> None:
        self.running_deploys = running_deploys
        self.followed: list[str] = []
        self.project = type("P", (), {"id": "p-1", "name": "blog", "agent": None})()

    def __enter__(self) -> FakeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def get_project(self, name: str) -> Any:
        return self.project

    def start_engineering(self, project: str, spec: str, agent: str | None) -> Task:
        return _task("eng-2", TaskType.ENGINEERING, TaskStatus.QUEUED)

    def start_deploy(self, project: str, server: str, ref: str | None = None) -> Task:
        raise ConflictError(409, "conflict", "a deploy of blog is already running")

    def list_tasks(
        self, project: str | None = None, status: str | None = None, type: str | None = None, **_: Any
    ) -> Page[Task]:
        assert project == "p-1" and type == "deploy"
        return Page[Task](items=[t for t in self.running_deploys if t.status.value == status])


@pytest.fixture
def followed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []

    def follow(api: Any, task_id: str, on_event: Any, **_: Any) -> Task:
        seen.append(task_id)
        if task_id.startswith("eng"):
            return _task(task_id, TaskType.ENGINEERING, TaskStatus.COMPLETED, {"branch": "main"})
        return _task(
            task_id, TaskType.DEPLOY, TaskStatus.COMPLETED, {"deployed_url": "http://127.0.0.1:9000"}
        )

    monkeypatch.setattr(commands_run, "_ensure_stack", lambda *a: None)
    monkeypatch.setattr("cli.follow.follow", follow)
    return seen


def _run(monkeypatch: pytest.MonkeyPatch, api: FakeApi) -> Any:
    monkeypatch.setattr(commands_run, "client", lambda ctx: api)
    return CliRunner().invoke(app, ["run", "--name", "blog", "--spec", "a blog", "--json"])


def test_a_409_on_deploy_follows_the_deploy_in_progress(
    monkeypatch: pytest.MonkeyPatch, followed: list[str]
) -> None:
    api = FakeApi(
        [
            _task("dep-old", TaskType.DEPLOY, TaskStatus.RUNNING, age_s=60),
            _task("dep-1", TaskType.DEPLOY, TaskStatus.RUNNING, age_s=5),
        ]
    )
    result = _run(monkeypatch, api)
    assert result.exit_code == 0, result.output
    assert followed == ["eng-2", "dep-1"]
    assert json.loads(result.output)["url"] == "http://127.0.0.1:9000"


def test_a_409_with_no_deploy_in_progress_is_still_an_error(
    monkeypatch: pytest.MonkeyPatch, followed: list[str]
) -> None:
    result = _run(monkeypatch, FakeApi([]))
    assert result.exit_code != 0
    assert followed == ["eng-2"]
