from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

import shared.contracts as contracts
from shared.contracts import (
    QUEUES,
    ContractError,
    CreateWorkerCommand,
    CreateWorkerResponse,
    DeleteWorkerResponse,
    EngineeringMessage,
    EngineeringResult,
    ProgressEvent,
    ProvisionerResult,
    SendMessageResponse,
    WorkerActivity,
    WorkerConfig,
    parse_message,
)
from tests.factories import engineering_message

EXPECTED_NAMES = [
    "QueueMeta",
    "BaseMessage",
    "BaseResult",
    "EngineeringMessage",
    "EngineeringResult",
    "DeployMessage",
    "DeployResult",
    "ScaffolderMessage",
    "ProvisionerMessage",
    "ProvisionerResult",
    "AnsibleDeployMessage",
    "AnsibleDeployResult",
    "WorkerConfig",
    "CreateWorkerCommand",
    "SendMessageCommand",
    "SendFileCommand",
    "DeleteWorkerCommand",
    "WorkerCommand",
    "CreateWorkerResponse",
    "SendMessageResponse",
    "DeleteWorkerResponse",
    "WorkerActivity",
    "WorkerResponse",
    "ProgressEvent",
]


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_every_contract_is_importable_by_its_name(name: str) -> None:
    assert hasattr(contracts, name)


def test_registry_covers_every_logical_queue() -> None:
    assert set(QUEUES) == {
        "engineering:queue",
        "deploy:queue",
        "scaffolder:queue",
        "provisioner:queue",
        "ansible:deploy:queue",
        "worker:commands",
        "worker:responses",
        "progress:events",
        "scaffolder:results",
        "ansible:deploy:results",
        "provisioner:results",
        "telegram:updates",
        "po:inbox",
        "po:responses",
    }


def test_envelope_is_filled_and_utc() -> None:
    message = engineering_message()
    assert message.version == "1"
    assert message.correlation_id and message.request_id
    assert message.timestamp.tzinfo is not None
    assert message.timestamp.utcoffset() == timedelta(0)


def test_timestamps_from_other_zones_are_normalised_to_utc() -> None:
    plus3 = datetime(2026, 1, 1, 15, 0, tzinfo=timezone(timedelta(hours=3)))
    message = engineering_message(timestamp=plus3)
    assert message.timestamp == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert message.timestamp.utcoffset() == timedelta(0)


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ContractError) as info:
        parse_message(
            "engineering:queue",
            {"task_id": "t", "project_id": "p", "user_id": 1, "timestamp": "2026-01-01T12:00:00"},
        )
    assert "timestamp" in info.value.fields


def test_round_trip_of_the_current_wire_form() -> None:
    original = engineering_message(deploy_fix_attempt=1)
    parsed = parse_message("engineering:queue", original.model_dump_json())
    assert parsed == original


def test_legacy_wire_form_is_accepted_and_envelope_filled() -> None:
    legacy = {"data": json.dumps({"task_id": "t1", "project_id": "p1", "user_id": 7})}
    parsed = parse_message("engineering:queue", json.dumps(legacy))
    assert isinstance(parsed, EngineeringMessage)
    assert parsed.task_id == "t1"
    assert parsed.version == "1"
    assert parsed.correlation_id
    assert parsed.timestamp.tzinfo is not None


def test_legacy_form_with_garbage_inside_is_a_contract_error() -> None:
    with pytest.raises(ContractError, match="legacy 'data' field is not JSON"):
        parse_message("engineering:queue", json.dumps({"data": "{not json"}))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("not json", "body is not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"task_id": "t"}', "project_id: Field required"),
        ('{"task_id": "t", "project_id": "p", "user_id": "abc"}', "user_id"),
        ('{"task_id": "t", "project_id": "p", "user_id": 1, "version": "2"}', "version"),
    ],
)
def test_bad_bodies_raise_one_clear_error_type(raw: str, expected: str) -> None:
    with pytest.raises(ContractError) as info:
        parse_message("engineering:queue", raw)
    assert expected in str(info.value)
    assert info.value.queue == "engineering:queue"


def test_unknown_queue_is_named_in_the_error() -> None:
    with pytest.raises(ContractError, match="unknown queue 'nope:queue'"):
        parse_message("nope:queue", "{}")


def test_worker_commands_discriminate_on_command() -> None:
    create = CreateWorkerCommand(config=WorkerConfig(name="dev", agent="claude-code"), context={"task": "x"})
    parsed = parse_message("worker:commands", create.model_dump_json())
    assert isinstance(parsed, CreateWorkerCommand)
    with pytest.raises(ContractError, match="command"):
        parse_message("worker:commands", json.dumps({"command": "explode", "request_id": "r"}))


@pytest.mark.parametrize(
    ("payload", "expected_type"),
    [
        ({"request_id": "r", "success": True, "worker_id": "w1"}, CreateWorkerResponse),
        ({"request_id": "r", "success": True, "response": "done"}, SendMessageResponse),
        ({"request_id": "r", "success": False, "error": "gone"}, DeleteWorkerResponse),
        (
            {"request_id": "r", "success": True, "command": "send_message", "worker_id": "w"},
            SendMessageResponse,
        ),
    ],
)
def test_worker_responses_without_command_are_inferred(
    payload: dict[str, object], expected_type: type
) -> None:
    assert isinstance(parse_message("worker:responses", payload), expected_type)


@pytest.mark.parametrize("queue", ["worker:responses", "po:responses"])
def test_activity_round_trips_on_both_reply_queues(queue: str) -> None:
    activity = WorkerActivity(request_id="po:m-1", worker_id="w-po", success=True, correlation_id="corr-1")
    parsed = parse_message(queue, activity.model_dump_json())
    assert isinstance(parsed, WorkerActivity)
    assert parsed == activity and parsed.command == "activity"
    legacy = parse_message(
        queue, {"data": json.dumps({"command": "activity", "request_id": "r", "success": True})}
    )
    assert isinstance(legacy, WorkerActivity)


def test_activity_every_s_is_optional_and_bounded() -> None:
    assert WorkerConfig(name="po", agent="command").activity_every_s is None
    assert WorkerConfig(name="po", agent="command", activity_every_s=4).activity_every_s == 4
    for too_often_or_too_rare in (1, 301):
        with pytest.raises(ValidationError, match="activity_every_s"):
            WorkerConfig(name="po", agent="command", activity_every_s=too_often_or_too_rare)


def test_task_progress_streams_resolve_to_progress_events() -> None:
    event = ProgressEvent(type="started", task_id="t1", message="go")
    parsed = parse_message("task_progress:t1", event.model_dump_json())
    assert isinstance(parsed, ProgressEvent)
    with pytest.raises(ContractError):
        parse_message("task_progress:t1", json.dumps({"type": "exploded", "task_id": "t1"}))


def test_progress_pct_is_bounded() -> None:
    with pytest.raises(ContractError, match="progress_pct"):
        parse_message("progress:events", {"type": "progress", "task_id": "t", "progress_pct": 101})


def test_deploy_fix_attempt_is_capped() -> None:
    with pytest.raises(ContractError, match="deploy_fix_attempt"):
        parse_message(
            "deploy:queue", {"task_id": "t", "project_id": "p", "user_id": 1, "deploy_fix_attempt": 3}
        )


def test_unknown_fields_survive_for_forward_compatibility() -> None:
    parsed = parse_message(
        "engineering:queue", {"task_id": "t", "project_id": "p", "user_id": 1, "future": 1}
    )
    assert json.loads(parsed.model_dump_json())["future"] == 1


# Seed-era bodies (issue 16, item 14): the seed sent null for empty lists, a count for
# services_redeployed, and progress events whose task was named by their stream only.


@pytest.mark.parametrize(
    ("queue", "body", "field"),
    [
        (
            "provisioner:results",
            {"request_id": "r", "status": "failed", "server_handle": "s", "errors": None},
            "errors",
        ),
        (
            "scaffolder:queue",
            {"project_id": "p", "repo_full_name": "o/r", "project_name": "n", "modules": None},
            "modules",
        ),
        (
            "ansible:deploy:queue",
            {
                "project_id": "p",
                "project_name": "n",
                "repo_full_name": "o/r",
                "server_ip": "10.0.0.1",
                "port": 8080,
                "modules": None,
            },
            "modules",
        ),
    ],
)
def test_seed_nulls_for_lists_read_as_empty(queue: str, body: dict[str, object], field: str) -> None:
    parsed = parse_message(queue, {"data": json.dumps(body)})
    assert getattr(parsed, field) == []


def test_seed_engineering_result_with_null_files_changed_reads_as_empty() -> None:
    result = EngineeringResult.model_validate({"request_id": "r", "status": "success", "files_changed": None})
    assert result.files_changed == []


def test_seed_integer_services_redeployed_is_kept_as_a_count() -> None:
    parsed = parse_message(
        "provisioner:results",
        {"request_id": "r", "status": "success", "server_handle": "s", "services_redeployed": 3},
    )
    assert isinstance(parsed, ProvisionerResult)
    assert parsed.services_redeployed == []
    assert parsed.services_redeployed_count == 3
    named = ProvisionerResult(request_id="r", status="success", server_handle="s", services_redeployed=["a"])
    assert named.services_redeployed_count == 1


def test_seed_progress_event_takes_its_task_from_the_stream_name() -> None:
    parsed = parse_message("task_progress:t9", {"type": "progress", "message": "half way"})
    assert isinstance(parsed, ProgressEvent)
    assert parsed.task_id == "t9"


def test_progress_event_on_the_shared_stream_still_needs_its_task() -> None:
    with pytest.raises(ContractError, match="task_id"):
        parse_message("progress:events", {"type": "progress"})


def test_telegram_ids_are_bounded_to_a_signed_64_bit_integer() -> None:
    with pytest.raises(ContractError, match="update_id"):
        parse_message("telegram:updates", {"update_id": 10**30, "update": {}})
    with pytest.raises(ContractError, match="chat_id"):
        parse_message(
            "po:inbox", {"telegram_user_id": 1, "chat_id": -(2**63) - 1, "message_id": 1, "text": "hi"}
        )
    parsed = parse_message(
        "po:inbox", {"telegram_user_id": 1, "chat_id": -(10**12), "message_id": 1, "text": "x"}
    )
    assert parsed.chat_id == -(10**12)
