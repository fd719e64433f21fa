from __future__ import annotations

import json
from typing import Any

import pytest

from shared.contracts import EngineeringMessage
from shared.queues.consume import collect_failure_reasons, process_queue_event, source_queue
from shared.queues.local_runner import sqs_event
from shared.queues.port import ReceivedMessage
from tests.factories import engineering_message


def _event(*bodies: str) -> dict[str, Any]:
    from datetime import UTC, datetime

    messages = [
        ReceivedMessage(f"m{i}", body, f"r{i}", 1, datetime.now(UTC), {"correlation_id": f"c{i}"})
        for i, body in enumerate(bodies)
    ]
    return sqs_event("arn:aws:sqs:us-east-1:000000000000:test-engineering-queue", messages)


def test_valid_records_reach_the_handler_as_models() -> None:
    seen: list[EngineeringMessage] = []
    good = engineering_message()
    response = process_queue_event(
        _event(good.model_dump_json()), "engineering:queue", lambda m, r: seen.append(m)
    )
    assert response == {"batchItemFailures": []}
    assert seen == [good]


def test_poison_and_failing_records_are_reported_others_succeed(capsys: pytest.CaptureFixture[str]) -> None:
    good, failing = engineering_message(task_id="ok"), engineering_message(task_id="boom")
    handled: list[str] = []

    def handler(message: EngineeringMessage, record: object) -> None:
        if message.task_id == "boom":
            raise RuntimeError("agent exploded")
        handled.append(message.task_id)

    event = _event("not json", good.model_dump_json(), json.dumps({"task_id": 1}), failing.model_dump_json())
    with collect_failure_reasons() as reasons:
        response = process_queue_event(event, "engineering:queue", handler)

    assert handled == ["ok"]
    assert response == {
        "batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}]
    }
    assert reasons["m0"].startswith("contract: body is not JSON")
    assert "project_id: Field required" in reasons["m2"]
    assert reasons["m3"] == "RuntimeError: agent exploded"

    log_lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    poison = [line for line in log_lines if line["message"] == "poison message rejected"]
    assert {line["message_id"] for line in poison} == {"m0", "m2"}
    assert all("correlation_id" in line for line in log_lines)
    failed = next(line for line in log_lines if line["message"] == "record handler failed")
    assert failed["correlation_id"] == failing.correlation_id


def test_a_batch_where_everything_fails_still_returns_a_partial_response() -> None:
    response = process_queue_event(_event("x", "y"), "engineering:queue", lambda m, r: None)
    assert len(response["batchItemFailures"]) == 2


def test_the_source_queue_comes_from_the_records_arn_and_a_foreign_queue_is_refused() -> None:
    consumes = ("deploy:queue", "engineering:queue")
    assert source_queue(_event("{}"), consumes, "engineering") == "engineering:queue"
    assert source_queue({"Records": []}, consumes, "engineering") == "deploy:queue"
    with pytest.raises(ValueError, match="the scaffolder function does not consume engineering:queue"):
        source_queue(_event("{}"), ("scaffolder:queue",), "scaffolder")
