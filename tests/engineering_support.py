"""The API as the engineering graph sees it, in memory: just the calls the graph and its driver make,
with the API's compare-and-set claim and single-holder lease, the task's budget and its gates (asked
for once per (task, kind, round), answered by `answer_gate` as a person would)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from functions.engineering.graph import Ports
from functions.engineering.logic import Engineering
from functions.engineering.nodes import EngineeringNodes
from functions.engineering.settings import EngineeringSettings
from functions.engineering.state import EngState
from shared.api_client import ConflictError, NotFoundError
from shared.contracts import WORKER_COMMANDS, DeleteWorkerCommand, EngineeringMessage
from shared.contracts.api import Project, Task, TaskLeaseState, TaskStatus, TaskType
from shared.contracts.spend import BudgetCheck, Gate, GateNeed, GateRequest, GateStatus
from shared.queues.local import LocalQueue
from tests.factories import drain

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
        self.lease_takes = 0
        self.project_updates: list[dict[str, Any]] = []
        self.budget_note: str | None = None
        """Set: the task's budget is spent, this names it (e.g. "the task budget $1.00 (spent $1.02)")."""
        self.budget_checks = 0
        self.budget_says_status = True
        """False: an API older than `BudgetCheck.task_status` and `GateNeed.task_status` (the graph asks for
        the task as well)."""
        self.task_reads = 0
        self.gates_required: set[str] = set()
        """The gate kinds the project's policy asks for (none by default)."""
        self.gates: dict[tuple[str, int], Gate] = {}
        self.gate_requests: list[GateRequest] = []

    def take_lease(self, task_id: str, holder: str, seconds: int = 120) -> TaskLeaseState:
        self.lease_takes += 1
        if self.lease not in (None, holder):
            raise ConflictError(409, "conflict", "leased")
        self.lease = holder
        return TaskLeaseState(
            task_id=task_id, holder=holder, until=None, acquired=True, status=self.task.status
        )

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
        self.task_reads += 1
        return self.task

    def get_project(self, project_id: str) -> Project:
        return self.project

    def update_project(self, project_id: str, **changes: Any) -> Project:
        self.project_updates.append(changes)
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
            task_id=task_id,
            remaining_usd=0.0 if spent else 1.0,
            exhausted=spent,
            note=self.budget_note,
            task_status=self.task.status if self.budget_says_status else None,
        )

    def gate_needed(self, task_id: str, kind: str, server: str | None = None) -> GateNeed:
        required = kind in self.gates_required
        return GateNeed(
            required=required,
            reason=f"the policy {'asks' if required else 'does not ask'}",
            task_status=self.task.status if self.budget_says_status else None,
        )

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


# -- the graph over the fake API -------------------------------------------------------------------


class World:
    """The in-memory API, a local queue and the nodes over them."""

    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.api = FakeApi()
        self.queue = LocalQueue(tmp_path / "queue.db")
        self.settings = EngineeringSettings(home=tmp_path, checkpointer="sqlite", **settings)
        refs = {"GITHUB_TOKEN": "secret://gh"}
        self.nodes = EngineeringNodes(self.api, self.queue, self.settings, None, refs)  # type: ignore[arg-type]

    def state(self, **values: Any) -> EngState:
        """The state after prepare, on a project that has its repository."""
        known: dict[str, Any] = {
            "task_id": self.api.task.id,
            "project_id": "p1",
            "correlation_id": "c",
            "spec": "add a feature",
            "agent": "claude-code",
            "project_name": "blog",
            "repo_url": "/r.git",
            "repo_full_name": "projects/blog",
            "branch": f"orchestrator/{self.api.task.id[:8]}",
        }
        return EngState.model_validate(known | values)

    def commands(self) -> list[Any]:
        return drain(self.queue, WORKER_COMMANDS)

    def steps(self) -> list[tuple[str, str]]:
        return [(e["current_step"], e["message"]) for e in self.api.events]


class Run:
    """One engineering task driven through the compiled graph, answer by answer."""

    def __init__(self, world: World, agent: str = "command", repo_url: str | None = "/r.git") -> None:
        self.world = world
        world.api.task = world.api.task.model_copy(update={"params": {"agent": agent}})
        world.api.project = world.api.project.model_copy(update={"repo_url": repo_url})
        self.engine = Engineering(Ports(world.api, world.queue, world.settings), InMemorySaver())  # type: ignore[arg-type]
        self.task_id = world.api.task.id
        self.sent: list[Any] = []

    def start(self) -> Run:
        message = EngineeringMessage(task_id=self.task_id, project_id="p1", user_id=1)
        assert self.engine.start(message) == "started"
        self.sent += self.world.commands()
        return self

    def waiting_for(self) -> str | None:
        return self.engine.pending_wait(self.engine.graph.get_state(self.engine.config(self.task_id)))

    def answer(self, step: str, payload: dict[str, Any]) -> list[Any]:
        """Answer `<task>:<step>`, which the graph must be waiting for; the commands it sends next."""
        assert self.waiting_for() == f"{self.task_id}:{step}"
        assert self.engine.resume(f"{self.task_id}:{step}", payload) == "resumed"
        sent = self.world.commands()
        self.sent += sent
        return sent

    def wake(self, request_id: str) -> str:
        """The API's wake-up on engineering:queue (a person answered a gate); what the driver did."""
        message = EngineeringMessage(task_id=self.task_id, project_id="p1", user_id=1, request_id=request_id)
        outcome = self.engine.handle(message)
        self.sent += self.world.commands()
        return outcome

    def developer_round(self, rnd: int, files: list[str]) -> None:
        self.answer(f"developer:{rnd}:create", {"success": True, "worker_id": f"w-{rnd}"})
        self.answer(
            f"developer:{rnd}:message",
            {"success": True, "result": {"commit_sha": f"c{rnd}", "files_changed": files}},
        )
        if self.waiting_for() == f"{self.task_id}:tester:{rnd}:create":  # a worker of the tester's own
            self.answer(f"tester:{rnd}:create", {"success": True, "worker_id": f"t-{rnd}"})
        # otherwise the tests went to the developer's worker as a command (issue 24)

    def deleted(self) -> list[str]:
        return [c.worker_id for c in self.sent if isinstance(c, DeleteWorkerCommand)]
