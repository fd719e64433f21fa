"""A worker whose config names `reply_queue` (the Product Owner's) answers there, never on worker:responses;
its agent gets the job's env_vars (a secret reference resolved), not the wrapper's service credentials."""

from __future__ import annotations

import time
from typing import Any

import pytest

from shared.api_client import ApiError
from shared.contracts import (
    PO_RESPONSES,
    WORKER_COMMANDS,
    CreateWorkerCommand,
    CreateWorkerResponse,
    DeleteWorkerCommand,
    DeleteWorkerResponse,
    SendMessageCommand,
    SendMessageResponse,
    WorkerConfig,
    parse_message,
)
from shared.secrets.local import LocalSecrets
from tests.integration.workers.conftest import StackHarness

AGENT = 'cat > /dev/null; echo "key=${ORCH_API_KEY:-none} service=${ORCH_SERVICE_API_KEY_REF:-none}"'


def _drain(stack: StackHarness, queue: str, expected: int, timeout: float = 30.0) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < expected and time.monotonic() < deadline:
        for m in stack.queue.receive(queue, 10, wait_seconds=0.5, visibility_timeout=30):
            out.append(parse_message(queue, m.body))
            stack.queue.delete(queue, m.receipt_handle)
    return out


def test_responses_go_to_the_configured_queue_and_the_agent_sees_only_its_key(stack: StackHarness) -> None:
    LocalSecrets(stack.home / "secrets.json").put("secret://po/u1/api_key", "orch_person_key_123456")
    config = WorkerConfig(
        name="po-u1",
        agent="command",
        reply_queue=PO_RESPONSES,
        agent_options={"command": AGENT},
        env_vars={"ORCH_API_URL": "http://127.0.0.1:1", "ORCH_API_KEY": "secret://po/u1/api_key"},
    )  # type: ignore[call-arg]
    stack.queue.publish(
        WORKER_COMMANDS,
        CreateWorkerCommand(
            request_id="po-create-1",
            config=config,
            context={"chat_id": "5", "role": "product_owner", "user_id": "u1"},
        ),
    )
    [created] = _drain(stack, PO_RESPONSES, 1)
    assert isinstance(created, CreateWorkerResponse) and created.success, created
    stack.queue.publish(
        WORKER_COMMANDS,
        SendMessageCommand(request_id="po:tg:1", worker_id=created.worker_id, message="hello", timeout=30),
    )
    [answered] = _drain(stack, PO_RESPONSES, 1)
    assert isinstance(answered, SendMessageResponse) and answered.success, answered
    assert answered.response and "service=none" in answered.response
    assert "orch_person_key_123456" not in answered.response and "key=none" not in answered.response
    stack.queue.publish(WORKER_COMMANDS, DeleteWorkerCommand(request_id="d-1", worker_id=created.worker_id))
    [deleted] = _drain(stack, PO_RESPONSES, 1)
    assert isinstance(deleted, DeleteWorkerResponse) and deleted.success
    assert stack.responses(1, timeout=1.0) == []  # nothing on worker:responses


def test_an_unknown_reply_queue_is_refused_when_the_worker_is_recorded(stack: StackHarness) -> None:
    with pytest.raises(ApiError) as refused:
        stack.service.record_worker("w-bad", "command", config={"name": "x", "reply_queue": "deploy:queue"})
    assert refused.value.status == 422 and "reply_queue" in str(refused.value)
