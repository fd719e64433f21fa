"""`orchestrator run` follows the work already in progress instead of redoing it (issue 16, item 11;
issue 22, case 7): re-running after Ctrl-C or a crash attaches to the project's engineering or deploy
task, a deploy that appears meanwhile (409) is followed too, and Ctrl-C says what keeps running."""

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
    """The calls `run` makes. `running` are in progress from the start; `appearing` (deploys) only once
    engineering has started, as when another `run` races this one."""

    def __init__(self, appearing: list[Task], running: list[Task] | None = None) -> None:
        self.appearing = appearing
        self.running = list(running or [])
        self.started: list[str] = []
        self.project = type("P", (), {"id": "p-1", "name": "blog", "agent": None})()

    def __enter__(self) -> FakeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def get_project(self, name: str) -> Any:
        return self.project

    def get_server(self, handle: str) -> Any:
        assert handle == "localhost"
        return type("S", (), {"handle": handle})()

    def start_engineering(self, project: str, spec: str, agent: str | None) -> Task:
        self.started.append("eng-2")
        self.running += self.appearing
        return _task("eng-2", TaskType.ENGINEERING, TaskStatus.QUEUED)

    def start_deploy(self, project: str, server: str, ref: str | None = None) -> Task:
        if any(t.type is TaskType.DEPLOY for t in self.running):
            raise ConflictError(409, "conflict", "a deploy of blog is already running")
        self.started.append("dep-new")
        return _task("dep-new", TaskType.DEPLOY, TaskStatus.QUEUED)

    def list_tasks(
        self, project: str | None = None, status: str | None = None, type: str | None = None, **_: Any
    ) -> Page[Task]:
        assert project == "p-1"
        return Page[Task](
            items=[t for t in self.running if t.status.value == status and type in (None, t.type.value)]
        )


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


def _run(monkeypatch: pytest.MonkeyPatch, api: FakeApi, *extra: str) -> Any:
    monkeypatch.setattr(commands_run, "client", lambda ctx: api)
    return CliRunner().invoke(app, ["run", "--name", "blog", "--spec", "a blog", *extra])


def test_a_409_on_deploy_follows_the_deploy_in_progress(
    monkeypatch: pytest.MonkeyPatch, followed: list[str]
) -> None:
    api = FakeApi(
        [
            _task("dep-old", TaskType.DEPLOY, TaskStatus.RUNNING, age_s=60),
            _task("dep-1", TaskType.DEPLOY, TaskStatus.RUNNING, age_s=5),
        ]
    )
    result = _run(monkeypatch, api, "--json")
    assert result.exit_code == 0, result.output
    assert followed == ["eng-2", "dep-1"]
    assert json.loads(result.output)["url"] == "http://127.0.0.1:9000"


def test_a_409_with_no_deploy_in_progress_is_still_an_error(
    monkeypatch: pytest.MonkeyPatch, followed: list[str]
) -> None:
    api = FakeApi([])
    api.start_deploy = lambda *a, **k: (_ for _ in ()).throw(ConflictError(409, "conflict", "busy"))  # type: ignore[method-assign]
    result = _run(monkeypatch, api, "--json")
    assert result.exit_code != 0
    assert followed == ["eng-2"]


def test_a_rerun_during_the_deploy_follows_it_without_engineering_again(
    monkeypatch: pytest.MonkeyPatch, followed: list[str]
) -> None:
    api = FakeApi([], running=[_task("dep-1", TaskType.DEPLOY, TaskStatus.RUNNING)])
    result = _run(monkeypatch, api)
    assert result.exit_code == 0, result.output
    assert followed == ["dep-1"] and api.started == []
    assert "a deploy of blog is already running (task dep-1): following it" in result.output


def test_a_rerun_during_engineering_follows_it_then_deploys(
    monkeypatch: pytest.MonkeyPatch, followed: list[str]
) -> None:
    api = FakeApi([], running=[_task("eng-1", TaskType.ENGINEERING, TaskStatus.QUEUED)])
    result = _run(monkeypatch, api)
    assert result.exit_code == 0, result.output
    assert followed == ["eng-1", "dep-new"] and api.started == ["dep-new"]
    assert "engineering of blog is already queued (task eng-1): following it instead of starting another" in (
        result.output
    )


def test_ctrl_c_says_what_keeps_running_and_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(api: Any, task_id: str, on_event: Any, **_: Any) -> Task:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands_run, "_ensure_stack", lambda *a: None)
    monkeypatch.setattr("cli.follow.follow", interrupted)
    result = _run(monkeypatch, FakeApi([]))
    assert result.exit_code == 130
    assert (
        "error: interrupted: the engineering task eng-2 of blog keeps running in the stack; follow it: "
        "orchestrator task logs eng-2 --follow; the same `orchestrator run` again attaches to it"
    ) in result.output


class NewProjectApi(FakeApi):
    """No project named blog yet: `run` creates it, and a project created this moment has no task."""

    def __init__(self) -> None:
        super().__init__([])
        self.listed = 0

    def get_project(self, name: str) -> Any:
        from shared.api_client import NotFoundError

        raise NotFoundError(404, "not_found", "no project blog")

    def create_project(self, name: str, description: str, modules: list[str], agent: str | None) -> Any:
        return self.project

    def list_tasks(self, *args: Any, **kwargs: Any) -> Page[Task]:
        self.listed += 1
        return super().list_tasks(*args, **kwargs)


def test_a_project_created_by_the_run_starts_engineering_without_looking_for_its_tasks(
    monkeypatch: pytest.MonkeyPatch, followed: list[str]
) -> None:
    api = NewProjectApi()
    result = _run(monkeypatch, api, "--json")
    assert result.exit_code == 0, result.output
    assert followed == ["eng-2", "dep-new"] and api.listed == 0
