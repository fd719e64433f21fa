"""The engineering graph across invocations: each step is a fresh engine (a new Lambda invocation)
over the same checkpointer — SQLite embedded, DynamoDB (moto) in AWS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions.engineering.graph import Ports
from functions.engineering.logic import Engineering, LeaseBusy
from functions.engineering.nodes import EngineeringNodes
from functions.engineering.settings import EngineeringSettings
from functions.engineering.state import EngState
from shared.contracts import (
    SCAFFOLDER_QUEUE,
    WORKER_COMMANDS,
    CreateWorkerCommand,
    DeleteWorkerCommand,
    EngineeringMessage,
    ScaffolderMessage,
    SendMessageCommand,
)
from shared.contracts.api import TaskStatus
from shared.graphs.checkpoint import build_checkpointer, reset
from shared.queues.local import LocalQueue
from shared.repos.github import GitHubRepoHost
from shared.repos.local import LocalRepoHost
from shared.repos.port import RepoHost
from shared.secrets.local import LocalSecrets
from tests.engineering_support import FakeApi
from tests.factories import drain as _take
from tests.fakes.github_server import FakeGitHub
from tests.integration.test_repo_hosts import push_commit


@pytest.fixture(params=["sqlite", "dynamodb"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EngineeringSettings]:
    reset()
    if request.param == "sqlite":
        yield EngineeringSettings(home=tmp_path, checkpointer="sqlite")
    else:
        with mock_aws():
            boto3.client("dynamodb", region_name="us-east-1").create_table(
                TableName="checkpoints",
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[
                    {"AttributeName": "PK", "KeyType": "HASH"},
                    {"AttributeName": "SK", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "PK", "AttributeType": "S"},
                    {"AttributeName": "SK", "AttributeType": "S"},
                ],
            )
            yield EngineeringSettings(
                home=tmp_path, checkpointer="dynamodb", checkpoint_table="checkpoints", aws_region="us-east-1"
            )
    reset()


def _engine(api: FakeApi, queue: LocalQueue, settings: EngineeringSettings) -> Engineering:
    """A fresh engine per call: nothing survives between invocations but the checkpoint."""
    reset()
    return Engineering(Ports(api, queue, settings), build_checkpointer(settings))  # type: ignore[arg-type]


def test_graph_survives_between_invocations(settings: EngineeringSettings, tmp_path: Path) -> None:
    api, queue = FakeApi(), LocalQueue(tmp_path / "q.db")
    message = EngineeringMessage(task_id=api.task.id, project_id="p1", user_id=1)
    assert _engine(api, queue, settings).start(message) == "started"
    assert _engine(api, queue, settings).start(message) == "duplicate", "a redelivered start is a no-op"
    [scaffold] = _take(queue, SCAFFOLDER_QUEUE)
    assert isinstance(scaffold, ScaffolderMessage) and scaffold.task_id == api.task.id

    assert _engine(api, queue, settings).resume("someone-else:x", {}) in ("ignored", "not-ours")
    resumed = _engine(api, queue, settings).resume(
        scaffold.request_id, {"status": "success", "repo_url": "/r.git"}
    )
    assert resumed == "resumed"
    assert _engine(api, queue, settings).resume(scaffold.request_id, {"status": "success"}) == "ignored"
    [create] = _take(queue, WORKER_COMMANDS)
    assert isinstance(create, CreateWorkerCommand) and create.context["repo_url"] == "/r.git"

    _engine(api, queue, settings).resume(create.request_id, {"success": True, "worker_id": "w-dev"})
    [send] = _take(queue, WORKER_COMMANDS)
    assert (
        isinstance(send, SendMessageCommand) and send.worker_id == "w-dev" and "add a feature" in send.message
    )
    _engine(api, queue, settings).resume(
        send.request_id,
        {"success": True, "response": "done", "result": {"commit_sha": "abc", "files_changed": ["a.py"]}},
    )
    # the tests run on the developer's worker, as a command (issue 24): no second worker
    [run_tests] = _take(queue, WORKER_COMMANDS)
    assert isinstance(run_tests, SendMessageCommand) and run_tests.worker_id == "w-dev"
    assert (run_tests.kind, run_tests.message) == ("command", settings.test_command)
    _engine(api, queue, settings).resume(run_tests.request_id, {"success": True, "response": "ok"})
    [delete] = _take(queue, WORKER_COMMANDS)
    assert isinstance(delete, DeleteWorkerCommand) and delete.worker_id == "w-dev", "released once tested"
    assert api.task.status is TaskStatus.COMPLETED
    assert (
        api.task.result
        and api.task.result["commit_sha"] == "abc"
        and api.task.result["files_changed"] == ["a.py"]
    )
    steps = [e["current_step"] for e in api.events]
    assert (
        steps[0] == "prepare"
        and steps[-1] == "finalize"
        and {"scaffold", "developer", "tester"} <= set(steps)
    )


def test_cancelled_task_is_not_resumed(settings: EngineeringSettings, tmp_path: Path) -> None:
    api, queue = FakeApi(), LocalQueue(tmp_path / "q.db")
    api.project = api.project.model_copy(update={"repo_url": "/r.git"})
    _engine(api, queue, settings).start(EngineeringMessage(task_id=api.task.id, project_id="p1", user_id=1))
    [create] = _take(queue, WORKER_COMMANDS)
    api.task = api.task.model_copy(update={"status": TaskStatus.CANCELLED})
    assert (
        _engine(api, queue, settings).resume(create.request_id, {"success": True, "worker_id": "w"})
        == "ended"
    )
    assert _take(queue, WORKER_COMMANDS) == []


@pytest.mark.parametrize("lease_says_status", [True, False])
def test_a_resume_learns_the_task_ended_from_its_lease_or_from_an_older_api(
    settings: EngineeringSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lease_says_status: bool
) -> None:
    api, queue = FakeApi(), LocalQueue(tmp_path / "q.db")
    api.project = api.project.model_copy(update={"repo_url": "/r.git"})
    _engine(api, queue, settings).start(EngineeringMessage(task_id=api.task.id, project_id="p1", user_id=1))
    [create] = _take(queue, WORKER_COMMANDS)
    api.task = api.task.model_copy(update={"status": TaskStatus.CANCELLED})
    asked: list[str] = []
    get_task, take_lease = api.get_task, api.take_lease
    monkeypatch.setattr(api, "get_task", lambda task_id: asked.append(task_id) or get_task(task_id))
    if not lease_says_status:  # an API older than TaskLeaseState.status
        monkeypatch.setattr(
            api, "take_lease", lambda *a, **k: take_lease(*a, **k).model_copy(update={"status": None})
        )
    ended = _engine(api, queue, settings).resume(create.request_id, {"success": True, "worker_id": "w"})
    assert ended == "ended"
    assert asked == ([] if lease_says_status else [api.task.id])


def test_two_invocations_of_one_process_do_not_share_the_lease(tmp_path: Path) -> None:
    """The holder is per invocation: a second thread of the same process must wait, not drive."""
    api, queue = FakeApi(), LocalQueue(tmp_path / "q.db")
    engine = _engine(api, queue, EngineeringSettings(home=tmp_path, checkpointer="sqlite"))
    with engine.leased(api.task.id):
        with pytest.raises(LeaseBusy):
            with engine.leased(api.task.id):
                pass


# -- what finalize reports, as the repository host sees the work ------------------------------------


def _finalize(api: FakeApi, tmp_path: Path, host: RepoHost, **values: Any) -> dict[str, Any]:
    """Finalize over `host` for a state after the tests passed; the task's stored result."""
    settings = EngineeringSettings(home=tmp_path, checkpointer="sqlite", repo_owner="octo")
    nodes = EngineeringNodes(api, LocalQueue(tmp_path / "q.db"), settings, host)  # type: ignore[arg-type]
    known: dict[str, Any] = {
        "task_id": api.task.id,
        "project_id": "p1",
        "project_name": "blog",
        "spec": "add a feature\n\nwith details",
        "agent": "claude-code",
        "repo_full_name": "octo/blog",
        "repo_url": "/r.git",
        "branch": "orchestrator/t1",
        "commit_sha": "c-from-the-developer",
        "files_changed": ["a.py"],
    }
    nodes.finalize(EngState.model_validate(known | values))
    assert api.task.status is TaskStatus.COMPLETED and api.task.result is not None
    return api.task.result


@pytest.fixture
def local_host(tmp_path: Path) -> LocalRepoHost:
    host = LocalRepoHost(tmp_path / "repos")
    host.create_repo("octo/blog")
    return host


def test_finalize_reports_the_developer_s_pushed_branch(local_host: LocalRepoHost, tmp_path: Path) -> None:
    push_commit(local_host, "octo/blog", tmp_path / "work", "main")
    push_commit(local_host, "octo/blog", tmp_path / "work", "orchestrator/t1", content="two")

    result = _finalize(FakeApi(), tmp_path, local_host)

    assert (result["branch"], result["commit_sha"], result["pr_url"]) == (
        "orchestrator/t1",
        "c-from-the-developer",
        None,
    )


def test_a_developer_that_changed_nothing_delivers_the_base(
    local_host: LocalRepoHost, tmp_path: Path
) -> None:
    base_head = push_commit(local_host, "octo/blog", tmp_path / "work", "release")

    result = _finalize(FakeApi(), tmp_path, local_host, base_ref="release", commit_sha=None)

    assert (result["branch"], result["commit_sha"]) == ("release", base_head)


def test_without_a_developer_the_tested_commit_is_the_tip_of_the_base(
    local_host: LocalRepoHost, tmp_path: Path
) -> None:
    head = push_commit(local_host, "octo/blog", tmp_path / "work", "main")

    result = _finalize(FakeApi(), tmp_path, local_host, agent="none", branch="main", commit_sha="s0")

    assert (result["branch"], result["commit_sha"]) == ("main", head)


def test_on_github_finalize_opens_a_pull_request(tmp_path: Path) -> None:
    secrets = LocalSecrets(tmp_path / "secrets.json")
    secrets.put("secret://github/token", "ghp_Fake0123456789abcdefghijklmnopqrstuvwxyz")
    with (
        FakeGitHub(tmp_path / "github", token="ghp_Fake0123456789abcdefghijklmnopqrstuvwxyz") as github,
        GitHubRepoHost("octo", "secret://github/token", secrets, api_url=github.url) as host,
    ):
        host.create_repo("octo/blog")
        push_commit(host, "octo/blog", tmp_path / "work", "main")
        push_commit(host, "octo/blog", tmp_path / "work", "orchestrator/t1", content="two")
        api = FakeApi()

        result = _finalize(api, tmp_path, host, developer_answer="Added the feature.")

        [pull] = github.repo("octo/blog").pulls
    assert result["pr_url"] == pull["html_url"] and result["branch"] == "orchestrator/t1"
    assert (pull["head"]["ref"], pull["base"]["ref"]) == ("orchestrator/t1", "main")
    assert (pull["title"], pull["body"]) == ("blog: add a feature", "Added the feature.")
    assert api.events[-1]["message"] == f"done: commit c-from-the on {pull['html_url']}"
