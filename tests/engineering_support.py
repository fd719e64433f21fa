"""The API as the engineering graph sees it, in memory: just the calls the graph and its driver make,
with the API's compare-and-set claim and single-holder lease, the task's budget and its gates (asked
for once per (task, kind, round), answered by `answer_gate` as a person would)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from shared.api_client import ConflictError, NotFoundError
from shared.contracts.api import Project, Task, TaskStatus, TaskType
from shared.contracts.spend import BudgetCheck, Gate, GateNeed, GateRequest, GateStatus

WAITING_AT = {"plan": TaskStatus.WAITING_APPROVAL, "deploy": TaskStatus.WAITING_APPROVAL}


class FakeApi:
    """One project ("blog", no repository yet) and one queued engineering task on it (agent "command")."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.project = Project(
            id="p1",
            name="blog",
            description="",
            modules=["backend"],
            agent=None,
            repo_url=None,
            status="draft",
            owner_id="u",
            created_at=now,
            updated_at=now,
        )
        self.task = Task(
            id=str(uuid.uuid4()),
            project_id="p1",
            user_id="u",
            type=TaskType.ENGINEERING,
            status=TaskStatus.QUEUED,
            spec="add a feature",
            attempt=0,
            result=None,
            error=None,
            correlation_id="c",
            created_at=now,
            started_at=None,
            finished_at=None,
            heartbeat_at=None,
            params={"agent": "command"},
        )
        self.events: list[dict[str, Any]] = []
        self.lease: str | None = None
        self.budget_note: str | None = None
        """Set: the task's budget is spent, this names it (e.g. "the task budget $1.00 (spent $1.02)")."""
        self.budget_checks = 0
        self.gates_required: set[str] = set()
        """The gate kinds the project's policy asks for (none by default)."""
        self.gates: dict[tuple[str, int], Gate] = {}
        self.gate_requests: list[GateRequest] = []

    def take_lease(self, task_id: str, holder: str, seconds: int = 120) -> None:
        if self.lease not in (None, holder):
            raise ConflictError(409, "conflict", "leased")
        self.lease = holder

    def release_lease(self, task_id: str, holder: str) -> None:
        self.lease = None

    def claim_task(self, task_id: str, worker: str | None = None) -> Task:
        if self.task.status is not TaskStatus.QUEUED:
            raise ConflictError(409, "conflict", "already claimed")
        self.task = self.task.model_copy(
            update={"status": TaskStatus.RUNNING, "attempt": self.task.attempt + 1}
        )
        return self.task

    def get_task(self, task_id: str) -> Task:
        return self.task

    def get_project(self, project_id: str) -> Project:
        return self.project

    def update_project(self, project_id: str, **changes: Any) -> Project:
        self.project = self.project.model_copy(update=changes)
        return self.project

    def append_events(self, task_id: str, events: list[dict[str, Any]]) -> list[Any]:
        self.events.extend(events)
        return []

    def complete_task(self, task_id: str, result: dict[str, Any]) -> Task:
        self.task = self.task.model_copy(update={"status": TaskStatus.COMPLETED, "result": result})
        return self.task

    def fail_task(
        self, task_id: str, error: str, result: dict[str, Any] | None = None, reason: str | None = None
    ) -> Task:
        self.task = self.task.model_copy(
            update={"status": TaskStatus.FAILED, "error": error, "result": result, "failure_reason": reason}
        )
        return self.task

    # -- spend and control -------------------------------------------------------------------------

    def task_budget(self, task_id: str) -> BudgetCheck:
        self.budget_checks += 1
        spent = self.budget_note is not None
        return BudgetCheck(
            task_id=task_id, remaining_usd=0.0 if spent else 1.0, exhausted=spent, note=self.budget_note
        )

    def gate_needed(self, task_id: str, kind: str, server: str | None = None) -> GateNeed:
        required = kind in self.gates_required
        return GateNeed(required=required, reason=f"the policy {'asks' if required else 'does not ask'}")

    def request_gate(self, task_id: str, body: GateRequest) -> Gate:
        """Idempotent per (kind, round), like the API; parks the task in the gate's waiting status."""
        self.gate_requests.append(body)
        key = (body.kind, body.round)
        if key not in self.gates:
            self.gates[key] = Gate(
                id=f"g-{len(self.gates) + 1}",
                task_id=task_id,
                kind=body.kind,
                round=body.round,
                status="pending",
                summary=body.summary,
                details=body.details,
                requested_at=datetime.now(UTC),
            )
            waiting = WAITING_AT.get(body.kind, TaskStatus.WAITING_HUMAN_REVIEW)
            self.task = self.task.model_copy(update={"status": waiting})
        return self.gates[key]

    def get_gate(self, task_id: str, kind: str, round: int) -> Gate:
        try:
            return self.gates[(kind, round)]
        except KeyError:
            raise NotFoundError(404, "not_found", "no such gate") from None

    def answer_gate(self, kind: str, round_: int, status: GateStatus, comment: str | None = None) -> str:
        """A person answers (approve, reject, resume) or the gate expires; returns the wake-up's
        request id. The task runs again, or FAILED (rejected / expired) in the same step."""
        gate = self.gates[(kind, round_)].model_copy(
            update={"status": status, "comment": comment, "answered_by": "ann"}
        )
        self.gates[(kind, round_)] = gate
        if status in ("approved", "resumed"):
            self.task = self.task.model_copy(update={"status": TaskStatus.RUNNING})
        elif status == "cancelled":
            self.cancel()
        else:
            self.task = self.task.model_copy(
                update={
                    "status": TaskStatus.FAILED,
                    "error": f"the {kind} was {status}",
                    "failure_reason": status,
                }
            )
        return f"{self.task.id}:gate:{kind}:{round_}"

    def cancel(self) -> None:
        """A person cancels the task (the API marks it final; the graph learns of it on its next step)."""
        self.task = self.task.model_copy(update={"status": TaskStatus.CANCELLED})
