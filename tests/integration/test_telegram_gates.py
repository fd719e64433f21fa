"""Gates answered from chat, end to end on one machine (issue 21): the real API (SQLite, in-process)
parks a task at a gate; the notifier turns its outbox events into the status message (with [Approve]
[Reject] while it waits for approval) on the fake Bot API; a button press or a reply goes through
the webhook and the aiogram consumer back to the API.
"""

from __future__ import annotations

from typing import Any

from functions.telegram_notifier.notifier import Notifier
from shared.contracts import PO_INBOX, PROGRESS_EVENTS
from shared.contracts.api import TaskStatus
from shared.contracts.spend import GateRequest
from shared.telegram.client import TelegramClient
from tests.factories import drain
from tests.fakes.telegram_server import callback_update, message_update
from tests.integration import test_telegram_bot as bot_tests
from tests.integration.test_telegram_bot import ALICE_TG, BOB_TG, STRANGER_TG, TOKEN, World

# the bot's world (API, queue, claims, fake Bot API, one consumer runtime), its fixtures as they are
telegram = bot_tests.telegram
bot_runtime = bot_tests.bot_runtime
world = bot_tests.world

PLAN = "Plan: a blog with posts and an RSS feed\nEstimate: $1.20 (the average of the last 5 tasks)"


def _parked(world: World, kind: str, summary: str, round_: int = 0) -> str:
    """An engineering task of alice's, running, then parked at a gate by its graph (service scope)."""
    with world.client_for("alice") as alice:
        if not any(p.name == "blog" for p in alice.list_projects()):
            alice.create_project("blog")
        task_id = alice.start_engineering("blog", "build a blog").id
    world.service.claim_task(task_id, worker="test")
    _notify(world)  # its status message says it runs
    world.service.request_gate(task_id, GateRequest(kind=kind, round=round_, summary=summary))  # type: ignore[arg-type]
    return task_id


def _notify(world: World) -> None:
    """The notifier over what the API put on progress:events since the last call."""
    bot = TelegramClient(
        TOKEN, world.telegram.url, timeout=5, attempts=2, base_delay_s=0, sleep=lambda _s: None
    )
    try:
        notifier = Notifier(world.service, bot, claim_wait_s=0.02)
        for message in drain(world.api.deps.queue, PROGRESS_EVENTS):
            notifier.handle(message)
    finally:
        bot.close()


def _status_message(world: World, task_id: str) -> dict[str, Any]:
    """The status message as Telegram holds it (the sendMessage result the person sees)."""
    message_id = world.service.task_notification(task_id).message_id
    [sent] = [
        c for c in world.telegram.calls_to("sendMessage") if c.result and c.result["message_id"] == message_id
    ]
    return dict(sent.result)


def _press(world: World, from_id: int, data: str, message: dict[str, Any]) -> str:
    """One button press through the webhook and the consumer; the answerCallbackQuery text."""
    before = len(world.telegram.answers())
    assert world.post(callback_update(from_id, data, message=message))[0] == 200
    assert world.consume() == (1, 0)
    [answer] = world.telegram.answers()[before:]
    return answer


def _reply(world: World, from_id: int, text: str, to: dict[str, Any]) -> list[str]:
    """A reply to `to` through the webhook and the consumer; what the bot sent back."""
    before = len(world.telegram.sent_texts())
    assert world.post(message_update(from_id, text, reply_to=to))[0] == 200
    assert world.consume() == (1, 0)
    return world.telegram.sent_texts()[before:]


def test_approve_from_the_inline_button_runs_the_task_and_the_buttons_go(world: World) -> None:
    task_id = _parked(world, "plan", PLAN)
    [running] = world.telegram.sent_texts()
    assert running == "blog · engineering · started (attempt 1)"
    _notify(world)
    status = _status_message(world, task_id)
    # a new message, so the person's phone rings (an edit makes no sound); the old one goes
    first = world.telegram.calls_to("sendMessage")[0].result["message_id"]
    assert status["message_id"] != first and world.telegram.deleted == {(ALICE_TG, first)}
    assert status["text"].splitlines() == [
        "blog · engineering · waiting for your approval of the plan",
        *PLAN.splitlines(),
        "Approve or reject it with the buttons below.",
    ]
    buttons = status["reply_markup"]["inline_keyboard"][0]
    assert [b["callback_data"] for b in buttons] == [f"gate:approve:{task_id}", f"gate:reject:{task_id}"]

    assert (
        _press(world, ALICE_TG, buttons[0]["callback_data"], status) == "Approved: the engineering goes on."
    )
    task = world.service.get_task(task_id)
    assert task.status == TaskStatus.RUNNING
    [gate] = world.service.task_gates(task_id)
    assert (gate.kind, gate.status) == ("plan", "approved")
    assert gate.answered_by == task.user_id, "the person who pressed is recorded, not the bot's service user"
    key = (ALICE_TG, status["message_id"])
    assert world.telegram.keyboards()[key] is None, "the answered buttons are taken away at once"
    _notify(world)  # and the status message moves on without them
    assert world.telegram.keyboards()[key] is None
    assert world.telegram.calls_to("editMessageText")[-1].params["text"].startswith("blog · engineering ·")

    # a second press (another device, a redelivered update): told, nothing changes
    late = _press(world, ALICE_TG, buttons[1]["callback_data"], status)
    assert late.startswith("Nothing to answer: task") and "approved" in late
    assert world.service.get_task(task_id).status == TaskStatus.RUNNING


def test_a_strangers_press_is_refused_and_the_owner_can_still_reject(world: World) -> None:
    task_id = _parked(world, "plan", PLAN)
    _notify(world)
    status = _status_message(world, task_id)
    approve, reject = (f"gate:{a}:{task_id}" for a in ("approve", "reject"))

    assert _press(world, BOB_TG, approve, status) == "Only the task's owner (or an admin) can answer this."
    refusal = _press(world, STRANGER_TG, approve, status)
    assert "private" in refusal and str(STRANGER_TG) in refusal
    assert all(c.params["show_alert"] for c in world.telegram.calls_to("answerCallbackQuery"))
    assert world.service.get_task(task_id).status == TaskStatus.WAITING_APPROVAL
    assert world.telegram.keyboards()[(ALICE_TG, status["message_id"])] is not None, "still to be answered"

    assert _press(world, ALICE_TG, reject, status) == f"Rejected: the engineering stops (task {task_id})."
    task = world.service.get_task(task_id)
    assert (task.status, task.failure_reason) == (TaskStatus.FAILED, "rejected")
    _notify(world)
    assert world.telegram.sent_texts()[-1].startswith("❌ blog · engineering failed: the plan was rejected")


def test_a_reply_to_the_status_message_resumes_a_review_with_the_guidance(world: World) -> None:
    output = "FAILED tests/test_home.py::test_title - AssertionError: 'Blog' != 'My blog'"
    task_id = _parked(world, "review", output, round_=3)
    _notify(world)
    status = _status_message(world, task_id)
    assert output in status["text"] and "reply_markup" not in status
    assert status["text"].endswith(
        f"Reply to this message with guidance for the next round, or /cancel {task_id}"
    )

    # a reply to another of the bot's messages is not guidance: it goes to the Product Owner
    other = {**status, "message_id": status["message_id"] + 1000}
    assert world.post(message_update(ALICE_TG, "what is my blog doing?", reply_to=other))[0] == 200
    assert world.consume() == (1, 0)
    assert [m.text for m in drain(world.queue, PO_INBOX)] == ["what is my blog doing?"]
    assert world.service.get_task(task_id).status == TaskStatus.WAITING_HUMAN_REVIEW

    [said] = _reply(world, ALICE_TG, "the title is 'My blog': change the test, not the page", status)
    assert said.startswith(f"Thanks — task {task_id} goes on with your guidance")
    assert world.service.get_task(task_id).status == TaskStatus.RUNNING
    gate = world.service.get_gate(task_id, "review", 3)
    assert (gate.status, gate.comment) == ("resumed", "the title is 'My blog': change the test, not the page")
    assert gate.answered_by == world.service.get_task(task_id).user_id
    assert drain(world.queue, PO_INBOX) == [], "guidance is not chat"


def test_usage_and_help_answer_in_chat(world: World) -> None:
    [usage] = world.say(ALICE_TG, "/usage")
    assert usage.splitlines()[0].startswith("Your spend in ") and "$0.00" in usage.splitlines()[0]
    assert "Budgets:" in usage and "More: orchestrator usage" in usage
    [help_] = world.say(BOB_TG, "/help")
    assert "/usage" in help_ and "[Approve]" in help_
