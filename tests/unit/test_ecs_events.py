"""ECS "Task State Change" events → (worker id, final status), on the sample event and variations of it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from shared.workers.ecs_events import (
    WORKER_ID_TAG,
    parse_task_state_change,
    runtime_state,
    status_from_task,
)

FIXTURE = Path(__file__).parent.parent / "fixtures" / "ecs_task_state_change_stopped.json"
WORKER_ID = "0b6f2c1e-9d3a-4e5b-8c7f-1a2d3e4f5a6b"
TASK_ARN = "arn:aws:ecs:us-east-1:111122223333:task/orchestrator-workers/5e0c4a8b2f7d4b1c9e3a6f8d0b2c4e6a"


@pytest.fixture
def event() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(FIXTURE.read_text())
    return loaded


def _without_worker_env(detail: dict[str, Any]) -> None:
    for override in detail["overrides"]["containerOverrides"]:
        override["environment"] = [e for e in override["environment"] if e["name"] != "ORCH_WORKER_ID"]


def test_stopped_worker_event_gives_worker_id_exit_code_and_reason(event: dict[str, Any]) -> None:
    result = parse_task_state_change(event, container_name="worker")

    assert result is not None
    worker_id, status = result
    assert worker_id == WORKER_ID
    assert status.handle == TASK_ARN
    assert status.state == "STOPPED"
    assert status.exit_code == 1
    assert status.reason == "Essential container in task exited (EssentialContainerExited)"


def test_container_is_found_without_its_name_through_the_worker_override(event: dict[str, Any]) -> None:
    # given a sidecar next to the worker container
    sidecar = {"name": "log-router", "lastStatus": "STOPPED", "exitCode": 0}
    event["detail"]["containers"].insert(0, sidecar)

    result = parse_task_state_change(event)

    assert result is not None
    assert result[1].exit_code == 1


@pytest.mark.parametrize(
    "last_status", ["PROVISIONING", "PENDING", "RUNNING", "DEACTIVATING", "DEPROVISIONING"]
)
def test_not_yet_stopped_is_ignored(event: dict[str, Any], last_status: str) -> None:
    event["detail"]["lastStatus"] = last_status

    assert parse_task_state_change(event) is None


def test_a_task_that_is_not_a_worker_is_ignored(event: dict[str, Any]) -> None:
    event["detail"]["startedBy"] = "ecs-svc/9223370545345641169"
    _without_worker_env(event["detail"])

    assert parse_task_state_change(event) is None


@pytest.mark.parametrize(
    ("source", "detail_type"),
    [("aws.ecs", "ECS Container Instance State Change"), ("aws.ec2", "ECS Task State Change")],
)
def test_other_events_are_ignored(event: dict[str, Any], source: str, detail_type: str) -> None:
    event["source"], event["detail-type"] = source, detail_type

    assert parse_task_state_change(event) is None


def test_worker_id_from_the_tag_when_the_event_carries_tags(event: dict[str, Any]) -> None:
    _without_worker_env(event["detail"])
    event["detail"]["tags"] = [{"key": WORKER_ID_TAG, "value": "w-from-tag"}]

    result = parse_task_state_change(event, container_name="worker")

    assert result is not None
    assert result[0] == "w-from-tag"


def test_failed_to_start_has_no_exit_code_but_the_container_reason(event: dict[str, Any]) -> None:
    detail = event["detail"]
    detail["stopCode"] = "TaskFailedToStart"
    detail["stoppedReason"] = "Task failed to start"
    container = detail["containers"][0]
    del container["exitCode"]
    container["reason"] = "CannotPullContainerError: pull image manifest has been retried 5 time(s)"

    result = parse_task_state_change(event, container_name="worker")

    assert result is not None
    status = result[1]
    assert status.exit_code is None
    assert status.reason is not None
    assert "Task failed to start (TaskFailedToStart)" in status.reason
    assert "container worker: CannotPullContainerError" in status.reason


def test_user_stop_reason_is_reported(event: dict[str, Any]) -> None:
    event["detail"]["stopCode"] = "UserInitiated"
    event["detail"]["stoppedReason"] = "worker deleted by request r-1"
    event["detail"]["containers"][0]["exitCode"] = 143

    result = parse_task_state_change(event, container_name="worker")

    assert result is not None
    assert result[1].exit_code == 143
    assert result[1].reason == "worker deleted by request r-1 (UserInitiated)"


def _drop(path: str) -> Any:
    def mutate(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = event
        for key in parents:
            target = target[key]
        del target[last]

    return mutate


def _set(path: str, value: Any) -> Any:
    def mutate(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = event
        for key in parents:
            target = target[key]
        target[last] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_drop("source"), "'source'"),
        (_drop("detail-type"), "'detail-type'"),
        (_drop("detail"), "no 'detail' object"),
        (_set("detail", "STOPPED"), "no 'detail' object"),
        (_drop("detail.lastStatus"), "'lastStatus'"),
        (_drop("detail.taskArn"), "'taskArn'"),
        (_set("detail.containers", {"name": "worker"}), "'containers' must be a list"),
        (_set("detail.overrides", []), "'overrides' must be an object"),
        (_set("detail.overrides.containerOverrides", "worker"), "containerOverrides"),
    ],
)
def test_malformed_events_raise_a_clear_value_error(event: dict[str, Any], mutate: Any, message: str) -> None:
    mutate(event)

    with pytest.raises(ValueError, match=message):
        parse_task_state_change(event)


def test_non_integer_exit_code_is_malformed(event: dict[str, Any]) -> None:
    event["detail"]["containers"][0]["exitCode"] = "1"

    with pytest.raises(ValueError, match="non-integer exitCode"):
        parse_task_state_change(event)


def test_not_an_object_is_malformed() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        parse_task_state_change(["not", "an", "event"])  # type: ignore[arg-type]


def test_a_worker_task_without_a_worker_id_is_malformed(event: dict[str, Any]) -> None:
    _without_worker_env(event["detail"])  # startedBy still says it is a worker

    with pytest.raises(ValueError, match="carries no worker id"):
        parse_task_state_change(event)


def test_tag_and_override_naming_different_workers_is_malformed(event: dict[str, Any]) -> None:
    event["detail"]["tags"] = [{"key": WORKER_ID_TAG, "value": "someone-else"}]

    with pytest.raises(ValueError, match="names two workers"):
        parse_task_state_change(event)


def test_the_fixture_is_not_mutated_between_tests(event: dict[str, Any]) -> None:
    pristine = copy.deepcopy(event)
    parse_task_state_change(event)
    assert event == pristine


@pytest.mark.parametrize(
    ("last_status", "desired", "expected"),
    [
        ("PROVISIONING", "RUNNING", "STARTING"),
        ("PENDING", "RUNNING", "STARTING"),
        ("ACTIVATING", "RUNNING", "STARTING"),
        ("RUNNING", "RUNNING", "RUNNING"),
        ("RUNNING", "STOPPED", "RUNNING"),
        ("DEACTIVATING", "STOPPED", "STOPPED"),
        ("STOPPING", "STOPPED", "STOPPED"),
        ("DEPROVISIONING", "STOPPED", "STOPPED"),
        ("STOPPED", "STOPPED", "STOPPED"),
        ("SOMETHING_NEW", "RUNNING", "RUNNING"),
        ("SOMETHING_NEW", "STOPPED", "STOPPED"),
    ],
)
def test_status_mapping(last_status: str, desired: str, expected: str) -> None:
    assert runtime_state(last_status, desired) == expected


def test_a_task_on_its_way_out_says_so_and_has_no_exit_code_yet() -> None:
    task = {
        "taskArn": TASK_ARN,
        "lastStatus": "STOPPING",
        "desiredStatus": "STOPPED",
        "stoppedReason": "worker deleted",
        "containers": [{"name": "worker", "lastStatus": "RUNNING"}],
    }

    status = status_from_task(task, "worker")

    assert status.state == "STOPPED"
    assert status.exit_code is None
    assert status.reason == "stopping (ECS lastStatus STOPPING); worker deleted"


def test_running_task_reports_no_exit_code_or_reason() -> None:
    task = {"taskArn": TASK_ARN, "lastStatus": "RUNNING", "containers": [{"name": "worker", "exitCode": 0}]}

    status = status_from_task(task, "worker")

    assert (status.state, status.exit_code, status.reason) == ("RUNNING", None, None)
