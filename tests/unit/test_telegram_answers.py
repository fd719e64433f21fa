"""A person answers a waiting task from chat (functions.telegram_bot.answers) against a fake API
client: who may press the buttons, what a second press hears, which reply is guidance, `/usage`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pytest
from aiogram import Bot
from aiogram.types import Message

from functions.telegram_bot import answers, texts
from functions.telegram_bot.bot import BotDeps, Viewer
from shared.api_client import ConflictError, NotFoundError
from shared.contracts.api import Page, Project, Task, TaskNotification, User
from shared.contracts.spend import BudgetStatus, Usage, UsageGroup, UsageTotals

NOW = datetime(2026, 11, 14, 9, 30, tzinfo=UTC)
BOT_ID = 123456789
ALICE = User.model_validate(
    {"id": "u-alice", "name": "alice", "telegram_id": 111, "is_admin": False, "created_at": NOW}
)
BOB = User.model_validate(
    {"id": "u-bob", "name": "bob", "telegram_id": 222, "is_admin": False, "created_at": NOW}
)


def task(task_id: str = "t1", status: str = "WAITING_APPROVAL", user_id: str = "u-alice") -> Task:
    return Task.model_validate(
        {
            "id": task_id,
            "project_id": "p1",
            "user_id": user_id,
            "type": "deploy",
            "status": status,
            "spec": None,
            "attempt": 1,
            "result": None,
            "error": None,
            "correlation_id": "c",
            "created_at": NOW,
            "started_at": NOW,
            "finished_at": None,
            "heartbeat_at": NOW,
        }
    )


def budget(scope: str, scope_id: str, period: str, usd: float, spent: float) -> BudgetStatus:
    return BudgetStatus.model_validate(
        {
            "scope": scope,
            "scope_id": scope_id,
            "period": period,
            "usd": usd,
            "source": "set",
            "spent_usd": spent,
            "remaining_usd": round(usd - spent, 6),
        }
    )


@dataclass
class FakeApi:
    """The calls answers.py makes, over a dict of tasks; records what it was asked."""

    tasks: dict[str, Task] = field(default_factory=dict)
    notes: dict[str, TaskNotification] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    usage_seen: dict[str, Any] = field(default_factory=dict)
    on_behalf_of: list[str | None] = field(default_factory=list)
    """Whom each answer was given for (the pressing person's user id)."""

    def get_task(self, task_id: str) -> Task:
        if task_id not in self.tasks:
            raise NotFoundError(404, "not_found", f"task {task_id} not found")
        return self.tasks[task_id]

    def _answer(self, task_id: str, waiting: str, now: str) -> Task:
        current = self.get_task(task_id)
        if current.status != waiting:
            raise ConflictError(
                409, "conflict", f"task {task_id} does not wait for that (it is {current.status})"
            )
        self.tasks[task_id] = current.model_copy(update={"status": now})
        return self.tasks[task_id]

    def approve_task(self, task_id: str, comment: str | None = None, on_behalf_of: str | None = None) -> Task:
        self.on_behalf_of.append(on_behalf_of)
        self.calls.append(("approve", task_id))
        return self._answer(task_id, "WAITING_APPROVAL", "RUNNING")

    def reject_task(self, task_id: str, comment: str | None = None, on_behalf_of: str | None = None) -> Task:
        self.on_behalf_of.append(on_behalf_of)
        self.calls.append(("reject", task_id))
        return self._answer(task_id, "WAITING_APPROVAL", "FAILED")

    def resume_task(self, task_id: str, guidance: str | None = None, on_behalf_of: str | None = None) -> Task:
        self.on_behalf_of.append(on_behalf_of)
        self.calls.append(("resume", (task_id, guidance)))
        return self._answer(task_id, "WAITING_HUMAN_REVIEW", "RUNNING")

    def list_tasks(self, status: str | None = None, limit: int = 50, **_: Any) -> Page[Task]:
        return Page[Task](items=[t for t in self.tasks.values() if status in (None, t.status)])

    def task_notification(self, task_id: str) -> TaskNotification:
        if task_id not in self.notes:
            raise NotFoundError(404, "not_found", "no notification")
        return self.notes[task_id]

    def usage(self, project: str | None = None, since: date | None = None, user: str | None = None) -> Usage:
        self.usage_seen.update(user=user, since=since)
        return Usage(
            user_id=user,
            since=since,
            total=UsageTotals(cost_usd=3.456, runs=7),
            by_project=[
                UsageGroup(key="p1", label="blog", cost_usd=3.0),
                UsageGroup(key="p2", label="shop", cost_usd=0.456),
            ],
            budgets=[
                budget("user", "u-alice", "month", 50, spent=3.456),
                budget("project", "p2", "month", 0.4, spent=0.456),
                budget("user", "u-alice", "task", 2, spent=0),
            ],
        )

    def list_projects(self) -> list[Project]:
        return []


def deps(api: FakeApi) -> BotDeps:
    return BotDeps(api=api, queue=None, claims=None, settings=None)  # type: ignore[arg-type]


def viewer(user: User | None = ALICE, admin: bool = False) -> Viewer:
    return Viewer(user.telegram_id if user and user.telegram_id else 999, user, admin)


def test_only_gate_buttons_parse() -> None:
    assert answers.parse_gate_callback("gate:approve:t-1_x") == ("approve", "t-1_x")
    assert answers.parse_gate_callback("gate:reject:t1") == ("reject", "t1")
    for other in (None, "", "gate:delete:t1", "gate:approve:", "gate:approve:t1 extra", "x:approve:t1"):
        assert answers.parse_gate_callback(other) is None


def test_the_owner_approves_and_a_second_press_hears_that_nothing_waits() -> None:
    api = FakeApi(tasks={"t1": task()})
    first = answers.answer_gate(deps(api), viewer(), "approve", "t1")
    assert first == answers.GateOutcome("Approved: the deploy goes on.", settled=True)
    assert api.tasks["t1"].status == "RUNNING"
    again = answers.answer_gate(deps(api), viewer(), "reject", "t1")
    assert again.settled and again.text.startswith("Nothing to answer: task t1 does not wait")
    assert api.tasks["t1"].status == "RUNNING", "the late reject changed nothing"


def test_someone_elses_task_is_refused_without_asking_the_api_and_an_admin_may_answer() -> None:
    api = FakeApi(tasks={"t1": task()})
    for who in (viewer(BOB), viewer(None)):
        refused = answers.answer_gate(deps(api), who, "approve", "t1")
        assert refused == answers.GateOutcome(texts.NOT_YOURS, settled=False)
    assert answers.answer_gate(deps(api), viewer(BOB), "reject", "missing").text == texts.NOT_YOURS
    assert api.calls == [] and api.tasks["t1"].status == "WAITING_APPROVAL"
    admin = answers.answer_gate(deps(api), viewer(BOB, admin=True), "reject", "t1")
    assert admin.settled and api.tasks["t1"].status == "FAILED"


def _reply(text: str, to_message_id: int, from_bot: bool = True, chat_id: int = 111) -> Message:
    replied = {
        "message_id": to_message_id,
        "date": 0,
        "chat": {"id": chat_id, "type": "private"},
        "from": {"id": BOT_ID if from_bot else 111, "is_bot": from_bot, "first_name": "x"},
        "text": "blog · engineering · waiting for your guidance",
    }
    return Message.model_validate(
        {
            "message_id": 900,
            "date": 0,
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": 111, "is_bot": False, "first_name": "alice"},
            "text": text,
            "reply_to_message": replied,
        }
    )


def _note(task_id: str, message_id: int, chat_id: int = 111) -> TaskNotification:
    unclaimed = dict.fromkeys(("claim_holder", "claimed_until", "final_sent_at"))
    fields = {"task_id": task_id, "chat_id": chat_id, "message_id": message_id, "text": ""}
    return TaskNotification.model_validate(fields | unclaimed)


def test_a_reply_is_guidance_only_to_the_status_message_of_a_task_waiting_for_review() -> None:
    bot = Bot(f"{BOT_ID}:AAunit-test-token")
    api = FakeApi(
        tasks={
            "t1": task("t1", "WAITING_HUMAN_REVIEW"),
            "t2": task("t2", "WAITING_HUMAN_REVIEW", user_id="u-bob"),
            "t3": task("t3", "RUNNING"),
        },
        notes={"t1": _note("t1", 41), "t2": _note("t2", 42), "t3": _note("t3", 43)},
    )
    found = answers.review_task_of(_reply("use sqlite", 41), deps(api), viewer(), bot)
    assert found is not None and found.id == "t1"
    assert answers.replies_to_review(_reply("use sqlite", 41), deps(api), viewer(), bot) == {
        "review_task": found
    }
    for not_guidance in (
        _reply("use sqlite", 42),  # bob's task
        _reply("use sqlite", 43),  # not waiting for review
        _reply("use sqlite", 44),  # some other message of the bot (a PO answer)
        _reply("use sqlite", 41, from_bot=False),  # a reply to one's own message
        _reply("use sqlite", 41, chat_id=555),  # another chat's message 41
        _reply("/status", 41),  # a command
    ):
        assert answers.review_task_of(not_guidance, deps(api), viewer(), bot) is None

    assert answers.take_guidance(deps(api), found, "  use sqlite  ") == texts.guidance_taken(api.tasks["t1"])
    assert ("resume", ("t1", "use sqlite")) in api.calls and api.tasks["t1"].status == "RUNNING"
    late = answers.take_guidance(deps(api), found, "and tests")
    assert late.startswith("Task t1 can't take guidance now: task t1 does not wait")


def test_usage_is_this_months_spend_per_project_and_the_budgets_left() -> None:
    api = FakeApi()
    text = answers.usage_text(deps(api), viewer(), now=NOW)
    assert api.usage_seen == {"user": "u-alice", "since": date(2026, 11, 1)}
    assert text.splitlines() == [
        "Your spend in 2026-11: $3.46 (7 agent runs)",
        "By project:",
        "- blog: $3.00",
        "- shop: $0.46",
        "Budgets:",
        "- you, per month $50.00: $46.54 left",
        "- shop, per month $0.40: $0.00 left (spent)",
        "- each task: up to $2.00",
        "More: orchestrator usage",
    ]
    assert "account" in answers.usage_text(deps(api), viewer(None, admin=True), now=NOW)


@pytest.mark.parametrize("command", ["usage"])
def test_the_help_and_the_menu_name_the_new_command_and_the_buttons(command: str) -> None:
    assert f"/{command}" in texts.HELP and command in [name for name, _ in texts.BOT_COMMANDS]
    assert "[Approve]" in texts.HELP and "reply to its status message" in texts.HELP.lower()
