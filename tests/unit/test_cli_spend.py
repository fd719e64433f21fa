"""The spend and control commands (issue 21) against a fake API client: `usage`, `budget set|show|clear`,
`project set --approval`, `task approve|reject|resume`, what `task show` prints of a task's cost, failure
reason and gate, and the one hint line `--follow` prints when a task waits for its person."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from cli import commands_spend, commands_tasks
from cli.errors import CliError, ExitCode
from cli.main import app
from shared.contracts.api import Task, TaskEvent, TaskStatus, TaskType
from shared.contracts.projects import Project
from shared.contracts.spend import (
    Budget,
    BudgetSet,
    BudgetStatus,
    Gate,
    Usage,
    UsageGroup,
    UsageTotals,
)

NOW = datetime(2026, 12, 3, 22, 0, tzinfo=UTC)
TASK_ID = "0b6c2a52-7d0e-4d0f-9a43-3f1d6f9e2a11"


def _gate(kind: str = "plan", status: str = "pending") -> Gate:
    return Gate(
        id="g-1",
        task_id=TASK_ID,
        kind=kind,  # type: ignore[arg-type]
        round=0,
        status=status,  # type: ignore[arg-type]
        summary="Build a blog\nestimate $0.40",
        requested_at=NOW,
    )


def _task(status: TaskStatus, **extra: Any) -> Task:
    return Task(
        id=TASK_ID,
        project_id="p-1",
        user_id="u-1",
        type=TaskType.ENGINEERING,
        status=status,
        spec="a blog",
        attempt=1,
        result=None,
        error=extra.pop("error", None),
        correlation_id="c",
        created_at=NOW,
        started_at=None,
        finished_at=None,
        heartbeat_at=None,
        **extra,
    )


def _project(approval: str | None) -> Project:
    return Project(
        id="p-1",
        name="blog",
        description="",
        modules=["backend"],
        agent=None,
        repo_url=None,
        status="active",  # type: ignore[arg-type]
        owner_id="u-1",
        created_at=NOW,
        updated_at=NOW,
        approval=approval,
    )


def _status(usd: float, spent: float) -> BudgetStatus:
    return BudgetStatus(
        scope="project",
        scope_id="p-1",
        period="task",
        usd=usd,
        source="set",
        spent_usd=spent,
        remaining_usd=usd - spent,
    )


class FakeApi:
    """Records the calls the commands make and answers like the API would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.statuses: list[Task] = []
        self.gates: list[Gate] = []

    def __enter__(self) -> FakeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def usage(self, project: str | None = None, since: date | None = None, user: str | None = None) -> Usage:
        self.calls.append(("usage", (project, since, user)))
        totals = {"cost_usd": 0.62, "agent_cost_usd": 0.62, "runs": 2, "input_tokens": 1200}
        return Usage(
            user_id="u-1",
            since=since,
            total=UsageTotals(**totals),
            by_project=[UsageGroup(key="p-1", label="blog", **totals)],
            by_task=[
                UsageGroup(key=TASK_ID, label="engineering", cost_usd=0.37, agent_cost_usd=0.37, runs=1)
            ],
            budgets=[_status(1.0, 0.37)],
        )

    def set_budget(self, body: BudgetSet) -> Budget:
        self.calls.append(("set_budget", body))
        scope = "project" if body.project else "user"
        return Budget(scope=scope, scope_id="p-1", period=body.per, usd=body.usd, source="set")

    def budgets(self, project: str | None = None, user: str | None = None) -> list[BudgetStatus]:
        self.calls.append(("budgets", (project, user)))
        return [_status(1.0, 0.25)]

    def clear_budget(self, per: str, project: str | None = None, user: str | None = None) -> None:
        self.calls.append(("clear_budget", (per, project, user)))

    def update_project(self, project: str, **changes: Any) -> Project:
        self.calls.append(("update_project", (project, changes)))
        return _project(changes["approval"])

    def approve_task(self, task_id: str, comment: str | None = None) -> Task:
        self.calls.append(("approve_task", (task_id, comment)))
        return _task(TaskStatus.RUNNING)

    def reject_task(self, task_id: str, comment: str | None = None) -> Task:
        self.calls.append(("reject_task", (task_id, comment)))
        return _task(TaskStatus.FAILED, failure_reason="rejected", error="the plan was rejected by you")

    def resume_task(self, task_id: str, guidance: str) -> Task:
        self.calls.append(("resume_task", (task_id, guidance)))
        return _task(TaskStatus.RUNNING)

    def get_task(self, task_id: str) -> Task:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def task_gates(self, task_id: str) -> list[Gate]:
        self.calls.append(("task_gates", task_id))
        return self.gates

    def task_events(self, task_id: str, after: int = 0) -> list[TaskEvent]:
        return []


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    fake = FakeApi()
    for module in (commands_spend, commands_tasks):
        monkeypatch.setattr(module, "client", lambda ctx: fake)
    return fake


def _run(*args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr as `orchestrator` (cli.main.main) gives them: a CliError is its code."""
    result = CliRunner().invoke(app, list(args))
    if isinstance(result.exception, CliError):
        return int(result.exception.code), result.stdout, result.exception.message
    return result.exit_code, result.stdout, result.stderr


def test_usage_json_passes_project_and_day_and_prints_the_apis_answer(api: FakeApi) -> None:
    code, out, _ = _run("usage", "--project", "blog", "--since", "2026-11-01", "--json")
    assert code == 0
    assert api.calls == [("usage", ("blog", date(2026, 11, 1), None))]
    assert json.loads(out)["total"]["agent_cost_usd"] == 0.62


def test_usage_text_says_the_total_to_the_cent_and_the_budget_left(api: FakeApi) -> None:
    code, out, _ = _run("usage")
    assert code == 0, out
    assert "spend of you: $0.62" in out
    assert "0b6c2a52 engineering" in out  # the task's short id, which every command takes back
    assert "$0.63" in out  # left of the $1.00 task budget


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "2026-1-5", "20261101"])
def test_usage_since_not_a_day_is_a_usage_error_naming_the_flag(api: FakeApi, since: str) -> None:
    code, _, error = _run("usage", "--since", since)
    assert code == ExitCode.USAGE
    assert "--since" in error and "YYYY-MM-DD" in error
    assert api.calls == []


def test_budget_set_sends_one_scope_the_amount_and_the_period(api: FakeApi) -> None:
    code, out, _ = _run("budget", "set", "--project", "blog", "--usd", "1", "--per", "task")
    assert code == 0, out
    assert api.calls == [("set_budget", BudgetSet(project="blog", usd=1.0, per="task"))]
    assert "budget of project blog: $1.00 per task" in out


@pytest.mark.parametrize("scope", [[], ["--project", "blog", "--user", "u-2"]], ids=["neither", "both"])
def test_budget_set_needs_exactly_one_of_project_and_user(api: FakeApi, scope: list[str]) -> None:
    code, _, error = _run("budget", "set", *scope, "--usd", "5", "--per", "month")
    assert code == ExitCode.USAGE
    assert "--project" in error and "--user" in error
    assert api.calls == []


def test_budget_set_refuses_a_negative_amount_and_an_unknown_period(api: FakeApi) -> None:
    assert _run("budget", "set", "--user", "u-2", "--usd", "-1", "--per", "task")[0] == ExitCode.USAGE
    assert _run("budget", "set", "--user", "u-2", "--usd", "1", "--per", "week")[0] == ExitCode.USAGE
    assert api.calls == []


def test_budget_show_and_clear(api: FakeApi) -> None:
    code, out, _ = _run("budget", "show", "--project", "blog", "--json")
    assert code == 0
    assert json.loads(out)[0]["remaining_usd"] == 0.75
    code, out, _ = _run("budget", "clear", "--user", "u-2", "--per", "month")
    assert code == 0
    assert api.calls == [("budgets", ("blog", None)), ("clear_budget", ("month", None, "u-2"))]
    assert "default again" in out


@pytest.mark.parametrize(
    ("given", "sent"),
    [("plan,deploy", "deploy,plan"), ("Deploy", "deploy"), ("none", "none"), ("default", None)],
)
def test_project_set_approval_sends_the_policy(api: FakeApi, given: str, sent: str | None) -> None:
    code, out, _ = _run("project", "set", "blog", "--approval", given)
    assert code == 0, out
    assert api.calls == [("update_project", ("blog", {"approval": sent}))]
    assert out.startswith("blog: approval")


@pytest.mark.parametrize("given", ["always", "deploy,none", ""])
def test_project_set_approval_refuses_an_unknown_policy(api: FakeApi, given: str) -> None:
    code, _, error = _run("project", "set", "blog", "--approval", given)
    assert code == ExitCode.USAGE
    assert "--approval" in error
    assert api.calls == []


def test_task_approve_reject_resume_answer_the_gate(api: FakeApi) -> None:
    code, out, _ = _run("task", "approve", TASK_ID, "--comment", "go")
    assert (code, out.split(":")[0]) == (0, f"task {TASK_ID} RUNNING")
    code, out, _ = _run("task", "reject", TASK_ID, "--json")
    assert code == 0 and json.loads(out)["failure_reason"] == "rejected"
    code, out, _ = _run("task", "reject", TASK_ID, "--comment", "not now")
    assert (code, out) == (0, f"task {TASK_ID} FAILED: rejected\n")  # nothing to follow any more
    code, out, _ = _run("task", "resume", TASK_ID, "--guidance", "use 42")
    assert code == 0 and "resumed with your guidance (follow: orchestrator task logs" in out
    assert api.calls == [
        ("approve_task", (TASK_ID, "go")),
        ("reject_task", (TASK_ID, None)),
        ("reject_task", (TASK_ID, "not now")),
        ("resume_task", (TASK_ID, "use 42")),
    ]


def test_task_resume_needs_guidance(api: FakeApi) -> None:
    assert _run("task", "resume", TASK_ID)[0] == ExitCode.USAGE
    code, _, error = _run("task", "resume", TASK_ID, "--guidance", "  ")
    assert code == ExitCode.USAGE and "--guidance" in error
    assert api.calls == []


def test_task_show_prints_cost_failure_reason_and_the_pending_gate(api: FakeApi) -> None:
    api.statuses = [_task(TaskStatus.WAITING_APPROVAL, cost_usd=0.37, gate=_gate())]
    code, out, _ = _run("task", "show", TASK_ID)
    assert code == 0, out
    assert "cost_usd: $0.37" in out
    assert "gate: plan approval (round 0) pending" in out
    assert "Build a blog" in out
    assert f"answer: orchestrator task approve {TASK_ID} (or reject)" in out
    api.statuses = [_task(TaskStatus.FAILED, failure_reason="budget", error="budget: the task budget $1.00")]
    code, out, _ = _run("task", "show", TASK_ID)
    assert "failure_reason: budget" in out and "gate:" not in out
    assert api.calls == []  # a task carrying its gate, or not waiting, needs no second read


def test_task_show_reads_the_gate_of_a_waiting_task_that_came_without_it(api: FakeApi) -> None:
    api.statuses = [_task(TaskStatus.WAITING_HUMAN_REVIEW)]
    code, out, _ = _run("task", "show", TASK_ID)
    assert (
        code == 0 and f'answer: orchestrator task resume {TASK_ID} --guidance "..." (or task cancel)' in out
    )
    api.gates = [_gate("plan", "approved"), _gate("review")]
    code, out, _ = _run("task", "show", TASK_ID, "--json")
    assert code == 0 and json.loads(out)["gate"]["kind"] == "review"
    assert api.calls == [("task_gates", TASK_ID)] * 2


def test_follow_hints_once_per_wait_and_keeps_following(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.follow import follow

    api.statuses = [
        _task(TaskStatus.RUNNING),
        _task(TaskStatus.WAITING_APPROVAL, gate=_gate()),
        _task(TaskStatus.WAITING_APPROVAL, gate=_gate()),
        _task(TaskStatus.RUNNING),
        _task(TaskStatus.WAITING_HUMAN_REVIEW),  # its gate read from the task's gates
        _task(TaskStatus.WAITING_HUMAN_REVIEW),
        _task(TaskStatus.COMPLETED),
    ]
    api.gates = [_gate("review")]
    final = follow(api, TASK_ID, lambda _e: None, interval=0.0, final_event_grace_s=0)  # type: ignore[arg-type]
    assert final.status is TaskStatus.COMPLETED
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"waiting for your approval of the plan (Build a blog): orchestrator task approve {TASK_ID} (or reject)",
        f'waiting for your guidance (Build a blog): orchestrator task resume {TASK_ID} --guidance "..." '
        "(or task cancel)",
    ]
    assert api.calls == [("task_gates", TASK_ID)]  # once, when it started waiting
