"""/tasks/{id}/approve, /reject, /resume: a person answers a task's gate (an approval or a human review).
/internal/tasks/{id}/gates: a graph parks its task at a gate (service scope)."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from functions.api.deps import get_deps
from functions.api.routers._common import created, new_router, principal, transaction
from functions.api.services import gates
from shared.contracts.api import Task
from shared.contracts.spend import Gate, GateAnswer, GateKind, GateNeed, GateRequest, GateResume
from shared.observability import count

router = new_router()
TAGS = ["gates"]
TaskId = Annotated[str, Path(description="The task's id.", max_length=64)]
Round = Annotated[int, Path(ge=0, le=1000, description="The graph's round (0 for a plan or a deploy).")]


def _service() -> None:
    principal(router).require_service()


@router.get(
    "/internal/tasks/<task_id>/gate-needed",
    summary="Must the task's graph stop for the owner's approval here?",
    tags=TAGS,
)
def gate_needed(
    task_id: TaskId,
    kind: Annotated[Literal["plan", "deploy"], Query(description="plan or deploy.")],
    server: Annotated[
        str | None, Query(max_length=63, description="The deploy's server handle (default: the task's).")
    ] = None,
) -> GateNeed:
    _service()
    with transaction() as session:
        return gates.needed(session, get_deps().settings, task_id, kind, server)


@router.post(
    "/internal/tasks/<task_id>/gates",
    summary="Park the task at a gate (idempotent per task, kind and round)",
    tags=TAGS,
    responses={
        200: {"description": "Asked before: the same gate"},
        201: {"description": "Parked: the task waits for a person"},
    },
)
def request_gate(task_id: TaskId, body: GateRequest) -> Response[Gate]:
    _service()
    with transaction() as session:
        row, parked = gates.request(session, get_deps().settings, task_id, body)
        gate = Gate.model_validate(row)
    return created(gate, 201 if parked else 200)


@router.get("/internal/tasks/<task_id>/gates/<kind>/<round>", summary="One gate of a task", tags=TAGS)
def get_gate(task_id: TaskId, kind: Annotated[GateKind, Path()], round: Round) -> Gate:
    _service()
    with transaction() as session:
        return Gate.model_validate(gates.get(session, task_id, kind, round))


@router.post(
    "/internal/gates/expire",
    summary="Fail the tasks whose gate nobody answered in time",
    tags=TAGS,
)
def expire_gates() -> dict[str, int]:
    _service()
    with transaction() as session:
        counts = gates.expire(session)
    if counts["expired"]:
        count("TasksFailed", counts["expired"])
    return counts


@router.get("/tasks/<task_id>/gates", summary="A task's gates: approvals and human reviews", tags=TAGS)
def task_gates(task_id: TaskId) -> list[Gate]:
    with transaction() as session:
        return [Gate.model_validate(g) for g in gates.of_task(session, principal(router), task_id)]


@router.post(
    "/tasks/<task_id>/approve",
    summary="Approve what the task waits for (its plan or its deploy); its graph goes on",
    tags=TAGS,
    responses={409: {"description": "Nothing waits for approval (answered, expired, or never asked)"}},
)
def approve_task(task_id: TaskId, body: GateAnswer) -> Task:
    return _answer(task_id, "approve", body)


@router.post(
    "/tasks/<task_id>/reject",
    summary="Reject what the task waits for: the task FAILS (reason rejected)",
    tags=TAGS,
    responses={409: {"description": "Nothing waits for approval (answered, expired, or never asked)"}},
)
def reject_task(task_id: TaskId, body: GateAnswer) -> Task:
    dto = _answer(task_id, "reject", body)
    count("TasksFailed")
    return dto


def _answer(task_id: str, verdict: str, body: GateAnswer) -> Task:
    with transaction() as session:
        who = gates.acting_for(session, principal(router), body.on_behalf_of)
        return Task.model_validate(gates.answer(session, who, task_id, verdict, body))


@router.post(
    "/tasks/<task_id>/resume",
    summary="End a human review with guidance: the next developer round gets it",
    tags=TAGS,
    responses={409: {"description": "No human review waits"}},
)
def resume_task(task_id: TaskId, body: GateResume) -> Task:
    with transaction() as session:
        who = gates.acting_for(session, principal(router), body.on_behalf_of)
        return Task.model_validate(gates.resume(session, who, task_id, body.guidance))
