"""/tasks: listing, details, the event stream, cancel and retry."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from functions.api.routers._common import created, new_router, principal, transaction
from functions.api.services import gates, lookup, tasks, usage
from shared.contracts.api import INT32_MAX, Gate, Page, Task, TaskEvent, TaskStatus, TaskType
from shared.observability import count

router = new_router()
TAGS = ["tasks"]
TaskId = Annotated[str, Path(description="The task's id.", max_length=64)]


@router.get("/tasks", summary="List tasks, newest first (cursor pagination)", tags=TAGS)
def list_tasks(
    project_id: Annotated[str | None, Query(description="Project id or name.", max_length=63)] = None,
    status: Annotated[TaskStatus | None, Query()] = None,
    type: Annotated[TaskType | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Page[Task]:
    with transaction() as session:
        rows, next_cursor = tasks.list_tasks(
            session, principal(router), project_id, status, type, limit, cursor
        )
        return Page[Task](items=[Task.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/tasks/<task_id>", summary="Show a task", tags=TAGS)
def get_task(task_id: TaskId) -> Task:
    with transaction() as session:
        dto = Task.model_validate(lookup.task(session, principal(router), task_id))
        dto.cost_usd = usage.task_cost_usd(session, dto.id)
        if dto.status in (TaskStatus.WAITING_APPROVAL, TaskStatus.WAITING_HUMAN_REVIEW):
            waiting = gates.pending(session, dto.id)
            dto.gate = Gate.model_validate(waiting) if waiting is not None else None
        return dto


@router.get("/tasks/<task_id>/events", summary="A task's progress events, in order", tags=TAGS)
def task_events(
    task_id: TaskId,
    after: Annotated[
        int, Query(ge=0, le=INT32_MAX, description="Only events with seq greater than this.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    latest: Annotated[
        bool, Query(description="The last `limit` events (still in order) instead of the first.")
    ] = False,
) -> list[TaskEvent]:
    with transaction() as session:
        task = lookup.task(session, principal(router), task_id)
        return [TaskEvent.model_validate(e) for e in tasks.events(session, task, after, limit, latest)]


@router.post("/tasks/<task_id>/cancel", summary="Cancel a queued or running task", tags=TAGS)
def cancel_task(task_id: TaskId) -> Task:
    with transaction() as session:
        task, _outbox_ids = tasks.cancel(session, principal(router), task_id)
        dto = Task.model_validate(task)
    count("TasksCancelled")
    return dto


@router.post(
    "/tasks/<task_id>/retry",
    summary="Queue a failed or cancelled task again",
    tags=TAGS,
    responses={202: {"description": "Accepted: queued again"}},
)
def retry_task(task_id: TaskId) -> Response[Task]:
    with transaction() as session:
        task, _message = tasks.retry(session, principal(router), task_id)
        dto = Task.model_validate(task)
    return created(dto, 202)
