"""The engineering function's worker:responses path: answers resume the graph, activity never does."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from functions.engineering.handler import lambda_handler
from shared.contracts import SendMessageResponse, WorkerActivity, dump_message
from shared.observability import get_logger
from shared.queues.local_runner import sqs_event
from shared.queues.port import ReceivedMessage

WORKER_RESPONSES_ARN = "arn:aws:sqs:us-east-1:0:orch-worker-responses"


class FakeEngine:
    def __init__(self) -> None:
        self.resumed: list[tuple[str, dict[str, Any]]] = []
        self.logger = get_logger()
        self.ports = SimpleNamespace(queue=None)

    def resume(self, request_id: str, payload: dict[str, Any]) -> str:
        self.resumed.append((request_id, payload))
        return "resumed"


def _received(body: str, n: int) -> ReceivedMessage:
    return ReceivedMessage(
        message_id=f"m-{n}", body=body, receipt_handle=f"r-{n}", receive_count=1, sent_at=datetime.now(UTC)
    )


def test_an_activity_response_is_ignored_and_the_answer_still_resumes_the_graph() -> None:
    # given "still working" and then the answer, for the developer step the graph waits on
    request_id = "task-1:developer:1:message"
    activity = WorkerActivity(request_id=request_id, worker_id="w-1", success=True)
    answer = SendMessageResponse(request_id=request_id, worker_id="w-1", success=True, response="done")
    engine = FakeEngine()

    # when both arrive on worker:responses
    event = sqs_event(
        WORKER_RESPONSES_ARN, [_received(dump_message(activity), 1), _received(dump_message(answer), 2)]
    )
    outcome = lambda_handler(event, None, engine=engine)  # type: ignore[arg-type]

    # then only the answer resumes the graph, and neither record fails
    assert outcome == {"batchItemFailures": []}
    assert [(rid, payload["command"]) for rid, payload in engine.resumed] == [(request_id, "send_message")]
