"""Typed task payloads (shared.contracts.payloads): each task type's params validate, a bad one names
its field, stored results read back as their models, and a worker's context keeps its str -> str wire form."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from functions.api.errors import Unprocessable
from functions.api.services.tasks import valid_params
from shared.contracts import (
    PARAMS,
    RESULTS,
    CreateWorkerCommand,
    DeployResult,
    EngineeringResult,
    WorkerConfig,
    parse_params,
    parse_result,
)
from shared.contracts.api import Task, TaskType, WorkerDetail
from shared.contracts.payloads import (
    DeployParams,
    DeployTaskResult,
    EngineeringParams,
    EngineeringTaskResult,
    TaskParams,
    TaskResult,
    UndeployParams,
    WorkerContext,
)

GOOD_PARAMS: dict[TaskType, dict[str, Any]] = {
    TaskType.ENGINEERING: {
        "agent": "claude-code",
        "base_ref": "feature/x",
        "parent_task_id": "d-1",
        "deploy_fix_attempt": 2,
    },
    TaskType.DEPLOY: {"server": "localhost", "ref": "abc123"},
    TaskType.UNDEPLOY: {"server": "prod-1"},
    TaskType.SCAFFOLD: {},
    TaskType.PROVISION: {},
}


def _task(task_type: TaskType, params: dict[str, Any], result: dict[str, Any] | None = None) -> Task:
    now = datetime.now(UTC)
    return Task(
        id="t-1",
        project_id="p-1",
        user_id="u-1",
        type=task_type,
        status="COMPLETED",
        spec=None,
        attempt=1,
        result=result,
        error=None,
        correlation_id="c-1",
        created_at=now,
        started_at=now,
        finished_at=now,
        heartbeat_at=now,
        params=params,
    )


def test_every_task_type_has_a_params_and_a_result_model() -> None:
    assert set(PARAMS) == set(RESULTS) == set(TaskType)


@pytest.mark.parametrize("task_type", list(TaskType))
def test_each_task_types_params_validate_and_dump_back_unchanged(task_type: TaskType) -> None:
    params = parse_params(task_type, GOOD_PARAMS[task_type])

    assert type(params) is PARAMS[task_type]
    assert params.model_dump(mode="json", exclude_unset=True) == GOOD_PARAMS[task_type]


def test_params_read_as_the_type_specific_model() -> None:
    engineering = parse_params(TaskType.ENGINEERING, GOOD_PARAMS[TaskType.ENGINEERING])
    deploy = parse_params("deploy", {"server": "localhost"})

    assert isinstance(engineering, EngineeringParams) and engineering.deploy_fix_attempt == 2
    assert isinstance(deploy, DeployParams) and (deploy.server, deploy.ref) == ("localhost", None)
    assert isinstance(parse_params(TaskType.UNDEPLOY, {"server": "a"}), UndeployParams)


@pytest.mark.parametrize(
    ("task_type", "params", "field"),
    [
        (TaskType.DEPLOY, {}, "server"),
        (TaskType.DEPLOY, {"server": "Not A Handle!"}, "server"),
        (TaskType.DEPLOY, {"server": "localhost", "ref": "has space"}, "ref"),
        (TaskType.UNDEPLOY, {"server": ""}, "server"),
        (TaskType.ENGINEERING, {"deploy_fix_attempt": 3}, "deploy_fix_attempt"),
        (TaskType.ENGINEERING, {"base_ref": "a..b c"}, "base_ref"),
        (TaskType.ENGINEERING, {"agent": "x" * 65}, "agent"),
    ],
)
def test_a_wrong_params_body_names_its_field(task_type: TaskType, params: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as model_error:
        parse_params(task_type, params)
    assert [e["loc"][0] for e in model_error.value.errors()] == [field]

    with pytest.raises(Unprocessable) as api_error:
        valid_params(task_type, params)
    assert api_error.value.status == 422 and api_error.value.fields == [field]
    assert task_type.value in api_error.value.message


def test_valid_params_store_only_the_keys_given() -> None:
    assert valid_params(TaskType.ENGINEERING, {"agent": None}) == {"agent": None}
    assert valid_params(TaskType.DEPLOY, DeployParams(server="localhost")) == {"server": "localhost"}


def test_unknown_params_keys_are_kept_for_newer_writers() -> None:
    params = parse_params(TaskType.DEPLOY, {"server": "localhost", "canary": True})
    assert params.model_dump(mode="json", exclude_unset=True) == {"server": "localhost", "canary": True}


def test_an_engineering_result_round_trips_through_its_stored_form() -> None:
    written = EngineeringResult(
        request_id="t-1",
        status="success",
        files_changed=["app.py"],
        commit_sha="abc",
        branch="orchestrator/t-1",
        pr_url="https://host/pr/1",
    ).model_dump(mode="json")
    stored = written | {"repo_url": "https://host/blog.git"}

    result = parse_result(TaskType.ENGINEERING, stored)

    assert isinstance(result, EngineeringTaskResult)
    assert (result.branch, result.commit_sha, result.files_changed) == ("orchestrator/t-1", "abc", ["app.py"])
    assert result.repo_url == "https://host/blog.git"
    # a field the stored form lacks (merge_commit, issue 19; cost_usd, issue 21) reads back as its default
    assert result.model_dump(mode="json") == stored | {"merge_commit": None, "cost_usd": None}


def test_a_deploy_and_an_undeploy_result_round_trip() -> None:
    deployed = DeployResult(
        request_id="t-2", status="success", deployed_url="http://h:8001", server_ip="10.0.0.1", port=8001
    ).model_dump(mode="json") | {"health_url": "http://h:8001/health", "ref": "abc", "deploy_fix_attempt": 0}
    stopped = DeployResult(request_id="t-3", status="success", port=8001).model_dump(mode="json") | {
        "stopped_url": "http://h:8001"
    }

    for task_type, stored in ((TaskType.DEPLOY, deployed), (TaskType.UNDEPLOY, stopped)):
        result = parse_result(task_type, stored)
        assert isinstance(result, DeployTaskResult)
        assert DeployTaskResult.model_validate(result.model_dump(mode="json")) == result
        assert {k: v for k, v in result.model_dump(mode="json").items() if v is not None} == {
            k: v for k, v in stored.items() if v is not None
        }
    assert parse_result(TaskType.DEPLOY, deployed).port == 8001  # type: ignore[union-attr]


def test_a_result_written_by_hand_still_reads() -> None:
    result = parse_result(TaskType.ENGINEERING, {"branch": "main"})
    assert isinstance(result, EngineeringTaskResult) and result.status is None and result.branch == "main"
    assert parse_result(TaskType.DEPLOY, None) is None


def test_a_result_with_a_wrong_field_type_is_refused() -> None:
    with pytest.raises(ValidationError) as error:
        parse_result(TaskType.DEPLOY, {"port": "not a port"})
    assert error.value.errors()[0]["loc"] == ("port",)


def test_the_task_dto_hands_out_models() -> None:
    task = _task(TaskType.DEPLOY, {"server": "localhost"}, {"status": "success", "deployed_url": "http://x"})

    assert task.typed_params() == DeployParams(server="localhost")
    assert isinstance(task.typed_result(), DeployTaskResult)
    assert task.params_as(DeployParams).server == "localhost"
    assert task.result_as(DeployTaskResult).deployed_url == "http://x"


def test_no_result_yet_reads_as_an_empty_one_when_asked_by_model() -> None:
    task = _task(TaskType.ENGINEERING, {})

    assert task.typed_result() is None
    assert task.result_as(EngineeringTaskResult).branch is None
    assert task.typed_params() == EngineeringParams()
    assert isinstance(_task(TaskType.SCAFFOLD, {}).typed_params(), TaskParams)
    assert type(_task(TaskType.PROVISION, {}, {}).typed_result()) is TaskResult


def test_worker_context_keeps_the_seed_wire_form() -> None:
    wire = {
        "task_id": "t-1",
        "repo_url": "/r.git",
        "branch": "b",
        "step": "tester",
        "base_branch": "main",
        "commit": "false",
    }

    context = WorkerContext.read(wire)

    assert context.commit is False and context.step == "tester"
    assert context.to_wire() == wire
    assert WorkerContext(task_id="t-2", step="developer").to_wire() == {"task_id": "t-2", "step": "developer"}


def test_worker_context_reads_empty_values_as_unset_and_commits_by_default() -> None:
    context = WorkerContext.read({"role": "product_owner", "language_code": "", "chat_id": "5"})

    assert (context.role, context.language_code, context.chat_id) == ("product_owner", None, "5")
    assert context.commit is True and context.repo_url is None
    assert WorkerContext.read(None) == WorkerContext()


def test_commands_and_worker_records_hand_out_the_typed_context() -> None:
    command = CreateWorkerCommand(
        config=WorkerConfig(name="dev", agent="command"),
        context=WorkerContext(task_id="t-1", commit=False).to_wire(),
    )
    detail = WorkerDetail(
        id="w-1",
        task_id="t-1",
        agent="command",
        runtime_handle=None,
        status="RUNNING",
        exit_reason=None,
        started_at=datetime.now(UTC),
        stopped_at=None,
        config={"context": command.context},
        create_request_id=None,
    )

    assert command.context == {"task_id": "t-1", "commit": "false"}
    assert command.typed_context() == detail.typed_context() == WorkerContext(task_id="t-1", commit=False)
