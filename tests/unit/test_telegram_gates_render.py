"""What the notifier shows for a task waiting for its person (issue 21), and for an incident; and how
the two kinds of progress:events messages are told apart. Pure functions, no network."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from functions.telegram_notifier import render
from shared.contracts import ContractError, ProgressEvent, parse_message
from shared.contracts.api import Task, TaskEvent
from shared.contracts.notices import IncidentNotice, IncidentPush
from shared.contracts.servers import Incident
from shared.contracts.spend import Gate
from tests.unit import test_notifier_render as render_tests

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TASK_ID = "0b6f3a52-4a4e-4b8e-9d38-0a3f2f6c1e11"


def task(**overrides: Any) -> Task:
    return render_tests.task(**{"id": TASK_ID, "type": "deploy", "status": "WAITING_APPROVAL", **overrides})


def gate(
    kind: str = "deploy", summary: str = "release 3 (abc1234 fix header) to server prod (203.0.113.7)"
) -> Gate:
    return Gate(
        id="g1", task_id=TASK_ID, kind=kind, round=0, status="pending", summary=summary, requested_at=NOW
    )  # type: ignore[arg-type]


def event(message: str) -> TaskEvent:
    return render_tests.event(1, message)


def test_an_approval_shows_what_is_to_be_approved_and_two_buttons_naming_the_task() -> None:
    text = render.status_text(task(), "blog", [event("waiting for approval")], gate())
    assert text.splitlines() == [
        "blog · deploy · waiting for your approval of the deploy",
        "release 3 (abc1234 fix header) to server prod (203.0.113.7)",
        "Approve or reject it with the buttons below.",
    ]
    keyboard = render.status_keyboard(task())
    assert keyboard == {
        "inline_keyboard": [
            [
                {"text": "✅ Approve", "callback_data": f"gate:approve:{TASK_ID}"},
                {"text": "❌ Reject", "callback_data": f"gate:reject:{TASK_ID}"},
            ]
        ]
    }


def test_without_the_gate_the_latest_event_says_what_waits() -> None:
    text = render.status_text(task(type="engineering"), "blog", [event("waiting for approval: the plan")])
    assert text.splitlines()[1] == "waiting for approval: the plan"


@pytest.mark.parametrize(
    "status", ["RUNNING", "WAITING_HUMAN_REVIEW", "WAITING_INPUT", "COMPLETED", "FAILED"]
)
def test_only_a_task_waiting_for_approval_has_buttons(status: str) -> None:
    assert render.status_keyboard(task(status=status)) is None


def test_a_review_shows_the_end_of_the_test_output_and_how_to_answer() -> None:
    output = "\n".join(f"line {i}" for i in range(2000)) + "\nFAILED tests/test_blog.py::test_home"
    text = render.status_text(
        task(status="WAITING_HUMAN_REVIEW", type="engineering"), "blog", [], gate("review", output)
    )
    lines = text.splitlines()
    assert lines[0] == "blog · engineering · waiting for your guidance"
    assert lines[-2] == "FAILED tests/test_blog.py::test_home", "the end of the output is what failed"
    assert lines[-1] == f"Reply to this message with guidance for the next round, or /cancel {TASK_ID}"
    assert len(text) < 4096 and lines[1].startswith("…"), "cut from the front, to fit one message"


def test_an_incident_reads_as_one_marked_line_with_its_time() -> None:
    incident = Incident(
        id="i1",
        owner_id="u1",
        project_id="p1",
        server_id=None,
        kind="service_down",
        message="blog is DOWN: https://blog.example/health does not answer (timeout)",
        created_at=NOW,
        notified_at=None,
    )
    text = render.incident_text(IncidentPush(incident=incident, chat_id=111, project_name="blog"))
    assert (
        text
        == "🔴 blog is DOWN: https://blog.example/health does not answer (timeout)\n(2026-11-01 12:00 UTC)"
    )


def test_progress_events_and_incident_notices_share_the_queue_told_apart_by_type() -> None:
    notice = parse_message("progress:events", IncidentNotice(incident_id="i1").model_dump_json())
    assert isinstance(notice, IncidentNotice) and notice.request_id == "incident:i1"
    event = parse_message("progress:events", {"type": "progress", "task_id": "t1"})
    assert isinstance(event, ProgressEvent)
    with pytest.raises(ContractError, match="incident_id"):
        parse_message("progress:events", {"type": "incident"})
    with pytest.raises(ContractError, match="task_id"):
        parse_message("progress:events", {"type": "progress"})
