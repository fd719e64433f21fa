"""A conversation outlives its workers (`session_key`): the next worker resumes the agent's session from the
session store, in the same workspace path; and a worker with `activity_every_s` reports, while its agent
works, on its reply queue (a chat's typing indicator). Real workers, real API, the strict fake `claude`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from shared.contracts import (
    PO_RESPONSES,
    WORKER_COMMANDS,
    CreateWorkerCommand,
    CreateWorkerResponse,
    DeleteWorkerCommand,
    SendMessageCommand,
    SendMessageResponse,
    WorkerActivity,
    WorkerConfig,
)
from tests.integration.workers.conftest import StackHarness, first_of

FAKES = Path(__file__).parents[2] / "fakes" / "agents"


def _worker(stack: StackHarness, n: int, config: WorkerConfig, context: dict[str, str]) -> str:
    stack.queue.publish(
        WORKER_COMMANDS, CreateWorkerCommand(request_id=f"create-{n}", config=config, context=context)
    )
    created, _ = first_of(stack, CreateWorkerResponse)
    assert created.success, created
    return str(created.worker_id)


def _ask(
    stack: StackHarness, worker_id: str, request_id: str, text: str
) -> tuple[SendMessageResponse, list[Any]]:
    stack.queue.publish(
        WORKER_COMMANDS,
        SendMessageCommand(request_id=request_id, worker_id=worker_id, message=text, timeout=30),
    )
    answer, before = first_of(stack, SendMessageResponse)
    assert answer.success, answer
    return answer, before


def test_the_next_worker_resumes_the_conversation(stack: StackHarness, tmp_path: Path) -> None:
    config = WorkerConfig(
        name="po-u1",
        agent="claude-code",
        reply_queue=PO_RESPONSES,
        agent_options={"bin": str(FAKES / "claude")},
    )  # type: ignore[call-arg]
    context = {"chat_id": "5", "session_key": "po/u1"}
    # given: a first worker answers, then is stopped
    first = _worker(stack, 1, config, context)
    answer, _ = _ask(stack, first, "m-1", "make a blog")
    assert answer.result and answer.result["session_id"]
    session_id = answer.result["session_id"]
    archive = stack.home / "sessions" / "po" / "u1.tar.gz"
    deadline = time.monotonic() + 10
    while not archive.exists():  # saved right after the answer went out
        assert time.monotonic() < deadline, "the session was not saved"
        time.sleep(0.1)
    stack.queue.publish(WORKER_COMMANDS, DeleteWorkerCommand(request_id="d-1", worker_id=first))
    # when: the person writes again, to a new worker
    second = _worker(stack, 2, config, context)
    answer, _ = _ask(stack, second, "m-2", "with comments")
    # then: the same session, resumed (the fake claude refuses an unknown one and counts turns)
    assert second != first
    assert answer.result and answer.result["session_id"] == session_id
    assert answer.response and answer.response.endswith("(turn 2)"), answer.response
    stack.queue.publish(WORKER_COMMANDS, DeleteWorkerCommand(request_id="d-2", worker_id=second))


def test_activity_is_reported_while_the_agent_works(stack: StackHarness) -> None:
    config = WorkerConfig(
        name="po-u2",
        agent="command",
        reply_queue=PO_RESPONSES,
        activity_every_s=2,
        agent_options={"command": "cat > /dev/null; sleep 3; echo done"},
    )  # type: ignore[call-arg]
    worker = _worker(stack, 3, config, {"chat_id": "6"})
    answer, before = _ask(stack, worker, "m-3", "think hard")
    activity = [r for r in before if isinstance(r, WorkerActivity)]
    assert len(activity) >= 2, before  # one as the agent starts, one 2 s in
    assert {(a.worker_id, a.request_id) for a in activity} == {(worker, "m-3")}
    assert answer.response == "done"
    stack.queue.publish(WORKER_COMMANDS, DeleteWorkerCommand(request_id="d-3", worker_id=worker))
