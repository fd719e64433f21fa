"""Gates: a task parked until a person answers. An approval (a plan, a deploy) or a human review.

A graph asks whether it must stop (`needed`), then parks its task (`request`): one `Gate` row per (task,
kind, round) and the task's compare-and-set RUNNING -> WAITING_APPROVAL / WAITING_HUMAN_REVIEW, in one
transaction, so a redelivered request finds the same gate and moves nothing twice. The graph waits on the
request id `<task>:gate:<kind>:<round>`; whoever ends the wait (an answer, the expiry) does so in one
transaction: the gate's compare-and-set out of `pending`, the task's transition, and the wake-up in the
outbox. So an answer survives any restart, and a second answer gets 409.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from functions.api.auth import Principal
from functions.api.db import rows_changed
from functions.api.errors import Conflict, Forbidden, NotFound, Unprocessable
from functions.api.models import Gate, Project, Server, Task, UsageEntry, User, utcnow
from functions.api.services import lookup, task_runs, tasks, unit_of_work
from shared.contracts.api import TaskStatus, TaskType
from shared.contracts.spend import (
    APPROVAL_TIMEOUT,
    REJECTED,
    REVIEW_TIMEOUT,
    GateAnswer,
    GateNeed,
    GateRequest,
    to_usd,
)
from shared.spend_settings import SpendControlSettings

S = TaskStatus
APPROVALS = ("plan", "deploy")
REVIEW = "review"
PENDING = "pending"
ESTIMATE_TASKS = 5
"""A plan's estimate: the average cost of this many of the project's latest completed engineering tasks."""
HEADLINE_CHARS = 300


def waiting_status(kind: str) -> TaskStatus:
    return S.WAITING_HUMAN_REVIEW if kind == REVIEW else S.WAITING_APPROVAL


def request_id(task_id: str, kind: str, round_: int) -> str:
    """The id the graph waits for (shared.graphs.driver.request_id(task_id, "gate", kind, round))."""
    return f"{task_id}:gate:{kind}:{round_}"


# -- the policy ---------------------------------------------------------------------------------


def normal_policy(value: str | None) -> str | None:
    """A project's approval as stored: "deploy,plan" in that order, "none", or None (the default; the
    API takes "default" for it too)."""
    if value is None or value == "default":
        return None
    parts = {p.strip() for p in value.split(",") if p.strip()}
    if "none" in parts:
        return "none"
    return ",".join(sorted(parts))


def _policy(project: Project, settings: SpendControlSettings) -> tuple[set[str], str]:
    if project.approval:
        return set(project.approval.split(",")), f"the project's approval policy is {project.approval}"
    default = normal_policy(settings.approval_default) or "none"
    return set(default.split(",")), f"the default approval policy is {default}"


def plan_estimate_usd(session: Session, project_id: str, exclude_task_id: str | None = None) -> float | None:
    """The average cost of the project's last `ESTIMATE_TASKS` completed engineering tasks that cost
    anything (the ledger's sums); None when there are none to go by."""
    micros = func.sum(UsageEntry.cost_micros)
    stmt = (
        select(micros)
        .select_from(Task)
        .join(UsageEntry, UsageEntry.task_id == Task.id)
        .where(
            Task.project_id == project_id,
            Task.type == TaskType.ENGINEERING.value,
            Task.status == S.COMPLETED.value,
        )
        .group_by(Task.id, Task.finished_at)
        .having(micros > 0)
        .order_by(Task.finished_at.desc(), Task.id.desc())
        .limit(ESTIMATE_TASKS)
    )
    if exclude_task_id:
        stmt = stmt.where(Task.id != exclude_task_id)
    costs = [int(c) for c in session.execute(stmt).scalars()]
    return to_usd(round(sum(costs) / len(costs))) if costs else None


def needed(
    session: Session, settings: SpendControlSettings, task_id: str, kind: str, server: str | None
) -> GateNeed:
    """Must the task's graph stop for the owner's approval before its plan / its deploy? Says the task's
    status too (a graph asks both at once)."""
    task = task_runs.current(session, task_id)
    need = _needed(session, settings, task, kind, server)
    need.task_status = TaskStatus(task.status)
    return need


def _needed(
    session: Session, settings: SpendControlSettings, task: Task, kind: str, server: str | None
) -> GateNeed:
    project = session.get(Project, task.project_id)
    if project is None:
        raise NotFound(f"the project of task {task.id!r} is gone")
    policy, why = _policy(project, settings)
    if kind == "deploy":
        return _deploy_needed(session, task, server, policy, why)
    if "none" in policy and project.approval:
        return GateNeed(required=False, reason=why)
    if "plan" in policy:
        return GateNeed(required=True, reason=why)
    estimate = plan_estimate_usd(session, project.id, task.id)
    threshold = settings.approval_plan_above_usd
    if estimate is None:
        return GateNeed(required=False, reason=f"{why}, and there is no cost estimate yet")
    if threshold is not None and estimate > threshold:
        return GateNeed(
            required=True,
            reason=f"the estimate ${estimate:.2f} (the project's recent tasks' average) is above "
            f"${threshold:.2f}",
            estimate_usd=estimate,
        )
    return GateNeed(required=False, reason=f"{why}; the estimate is ${estimate:.2f}", estimate_usd=estimate)


def _deploy_needed(session: Session, task: Task, handle: str | None, policy: set[str], why: str) -> GateNeed:
    params = task.params or {}
    if params.get("recovery"):
        return GateNeed(required=False, reason="a server's recovery brings back a release already approved")
    handle = handle or params.get("server")
    if not handle:
        raise Unprocessable("which server? pass server=HANDLE", ["server"])
    server = session.execute(select(Server).where(Server.handle == handle)).scalar_one_or_none()
    if server is None:
        raise NotFound(f"server {handle!r} not found", ["server"])
    if lookup.is_builtin(server):
        return GateNeed(required=False, reason=f"{handle} is the built-in server: no approval needed")
    if "deploy" in policy:
        return GateNeed(required=True, reason=f"{why}: deploys to {handle} wait for approval")
    return GateNeed(required=False, reason=why)


# -- parking a task -----------------------------------------------------------------------------


def _headline(summary: str) -> str:
    first = next((line.strip() for line in summary.splitlines() if line.strip()), summary.strip())
    return first if len(first) <= HEADLINE_CHARS else first[: HEADLINE_CHARS - 1] + "…"


def _find(session: Session, task_id: str, kind: str, round_: int) -> Gate | None:
    return session.execute(
        select(Gate)
        .where(Gate.task_id == task_id, Gate.kind == kind, Gate.round == round_)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _of_an_earlier_attempt(gate: Gate, task: Task) -> bool:
    """A gate asked for before the task's current attempt started: the task was retried since, and the
    person is asked again."""
    return task.started_at is not None and gate.requested_at < task.started_at


def request(
    session: Session, settings: SpendControlSettings, task_id: str, body: GateRequest
) -> tuple[Gate, bool]:
    """Park the task at a gate; returns the gate and whether this call parked it (False: a repeat)."""
    task = task_runs.current(session, task_id)
    now = utcnow()
    timeout = settings.review_timeout_s if body.kind == REVIEW else settings.approval_timeout_s
    fields: dict[str, Any] = {
        "status": PENDING,
        "summary": body.summary,
        "details": body.details,
        "comment": None,
        "answered_by": None,
        "answered_at": None,
        "requested_at": now,
        "expires_at": now + timedelta(seconds=timeout),
    }
    existing = _find(session, task.id, body.kind, body.round)
    if existing is None:
        if not unit_of_work.added(session, Gate(task_id=task.id, kind=body.kind, round=body.round, **fields)):
            return _raced(session, task.id, body), False  # a concurrent repeat parked it
    elif _of_an_earlier_attempt(existing, task):
        reopened = rows_changed(
            session,
            update(Gate)
            .where(Gate.id == existing.id, Gate.requested_at == existing.requested_at)
            .values(**fields)
            .execution_options(synchronize_session=False),
        )
        if reopened != 1:
            return _raced(session, task.id, body), False
    else:
        return existing, False
    _park(session, task, body)
    gate = _find(session, task.id, body.kind, body.round)
    assert gate is not None
    return gate, True


def _raced(session: Session, task_id: str, body: GateRequest) -> Gate:
    gate = _find(session, task_id, body.kind, body.round)
    if gate is None:  # pragma: no cover - the unique key refused the row, so it exists
        raise Conflict(f"the {body.kind} gate of task {task_id} is being written; ask again")
    return gate


def _park(session: Session, task: Task, body: GateRequest) -> None:
    waiting = waiting_status(body.kind)
    if task.status != waiting.value:
        tasks.transition(session, task.id, [S.RUNNING], waiting, heartbeat_at=utcnow())
    what = "your review" if body.kind == REVIEW else f"your approval of the {body.kind}"
    tasks.system_event(session, task, "progress", f"waiting for {what}: {_headline(body.summary)}")


def get(session: Session, task_id: str, kind: str, round_: int) -> Gate:
    gate = _find(session, task_id, kind, round_)
    if gate is None:
        raise NotFound(f"task {task_id!r} has no {kind} gate for round {round_}")
    return gate


def of_task(session: Session, principal: Principal, task_id: str) -> list[Gate]:
    task = lookup.task(session, principal, task_id)
    return list(
        session.execute(
            select(Gate).where(Gate.task_id == task.id).order_by(Gate.requested_at, Gate.id)
        ).scalars()
    )


def pending(session: Session, task_id: str) -> Gate | None:
    """What the task waits for now (a task has at most one pending gate), for a task's details."""
    return session.execute(
        select(Gate).where(Gate.task_id == task_id, Gate.status == PENDING).limit(1)
    ).scalar_one_or_none()


# -- answering ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    kinds: tuple[str, ...]
    status: str
    """The gate's status once answered."""
    what: str
    """What nothing waits for, in the 409's words."""


APPROVE = _Answer(APPROVALS, "approved", "your approval")
REJECT = _Answer(APPROVALS, "rejected", "your approval")
RESUME = _Answer((REVIEW,), "resumed", "your guidance (a human review)")


def _name(session: Session, user_id: str | None) -> str:
    user = session.get(User, user_id) if user_id else None
    return user.name if user is not None else "someone"


def _nothing_waits(session: Session, task: Task, answer: _Answer) -> Conflict:
    latest = session.execute(
        select(Gate)
        .where(Gate.task_id == task.id, Gate.kind.in_(answer.kinds), Gate.status != PENDING)
        .order_by(Gate.answered_at.desc(), Gate.requested_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    said = ""
    if latest is not None:
        by = f" by {_name(session, latest.answered_by)}" if latest.answered_by else ""
        said = f"; its {latest.kind} gate was {latest.status}{by}"
    hint = ""
    if answer.kinds == APPROVALS and task.status == S.WAITING_HUMAN_REVIEW.value:
        hint = f" (it waits for a review: orchestrator task resume {task.id} --guidance TEXT)"
    elif answer.kinds == (REVIEW,) and task.status == S.WAITING_APPROVAL.value:
        hint = f" (it waits for an approval: orchestrator task approve|reject {task.id})"
    return Conflict(f"task {task.id} is {task.status}: nothing waits for {answer.what}{said}{hint}")


def _close(
    session: Session, task: Task, answer: _Answer, by: str, comment: str | None, when: datetime
) -> Gate:
    """Compare-and-set the task's pending gate to the answer; 409 when none is pending (any more)."""
    gate = session.execute(
        select(Gate)
        .where(Gate.task_id == task.id, Gate.kind.in_(answer.kinds), Gate.status == PENDING)
        .order_by(Gate.requested_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    won = gate is not None and rows_changed(
        session,
        update(Gate)
        .where(Gate.id == gate.id, Gate.status == PENDING)
        .values(status=answer.status, comment=comment, answered_by=by, answered_at=when)
        .execution_options(synchronize_session=False),
    )
    if gate is None or not won:
        session.refresh(task)
        raise _nothing_waits(session, task, answer)
    session.refresh(gate)
    return gate


def acting_for(session: Session, caller: Principal, user_id: str | None) -> Principal:
    """Who answers: the caller, or (a service key only: the Telegram bot) the person it answers for, so the
    task must be theirs and the gate records them."""
    if user_id is None:
        return caller
    if not caller.is_service:
        raise Forbidden("only a service key may answer on behalf of someone (on_behalf_of)")
    user = session.get(User, user_id)
    if user is None:
        raise Unprocessable(f"no user {user_id!r} to answer on behalf of", ["on_behalf_of"])
    scopes = frozenset({"admin", "user"} if user.is_admin else {"user"})
    return Principal(user.id, user.telegram_id, user.is_admin, scopes, key_id=caller.key_id)


def answer(session: Session, principal: Principal, task_id: str, verdict: str, body: GateAnswer) -> Task:
    """approve / reject the task's pending approval (owner or admin), wake its graph."""
    task = lookup.task(session, principal, task_id)
    chosen = APPROVE if verdict == "approve" else REJECT
    now = utcnow()
    gate = _close(session, task, chosen, principal.user_id, body.comment, now)
    name = _name(session, principal.user_id)
    said = f": {body.comment}" if body.comment else ""
    if chosen is APPROVE:
        task = tasks.transition(session, task.id, [S.WAITING_APPROVAL], S.RUNNING, heartbeat_at=now)
        tasks.system_event(session, task, "progress", f"the {gate.kind} was approved by {name}{said}")
    else:
        error = f"the {gate.kind} was rejected by {name}{said}"
        task = tasks.transition(
            session,
            task.id,
            [S.WAITING_APPROVAL],
            S.FAILED,
            error=error,
            failure_reason=REJECTED,
            finished_at=now,
        )
        tasks.system_event(session, task, "failed", error, error=REJECTED)
    tasks.wake(session, task, request_id(task.id, gate.kind, gate.round))
    return task


def resume(session: Session, principal: Principal, task_id: str, guidance: str) -> Task:
    """The person's guidance ends a human review: the next developer round gets it."""
    task = lookup.task(session, principal, task_id)
    now = utcnow()
    gate = _close(session, task, RESUME, principal.user_id, guidance, now)
    task = tasks.transition(session, task.id, [S.WAITING_HUMAN_REVIEW], S.RUNNING, heartbeat_at=now)
    tasks.system_event(
        session, task, "progress", f"resumed by {_name(session, principal.user_id)} with guidance"
    )
    tasks.wake(session, task, request_id(task.id, gate.kind, gate.round))
    return task


# -- expiry -------------------------------------------------------------------------------------


def _waited(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.0f} h" if hours >= 1 else f"{seconds / 60:.0f} min"


def expire(session: Session, batch: int = 100, now: datetime | None = None) -> dict[str, int]:
    """Pending gates past their time: expired, their task FAILED (approval_timeout / review_timeout),
    their graph woken. Returns how many expired and how many gates still wait."""
    now = now or utcnow()
    due = list(
        session.execute(
            select(Gate)
            .where(Gate.status == PENDING, Gate.expires_at < now)
            .order_by(Gate.expires_at, Gate.id)
            .limit(batch)
        ).scalars()
    )
    expired = 0
    for gate in due:
        won = rows_changed(
            session,
            update(Gate)
            .where(Gate.id == gate.id, Gate.status == PENDING)
            .values(status="expired", answered_at=now)
            .execution_options(synchronize_session=False),
        )
        if won != 1:
            continue  # answered meanwhile
        expired += 1
        _fail_for_timeout(session, gate, now)
    left = session.execute(select(func.count()).select_from(Gate).where(Gate.status == PENDING)).scalar_one()
    return {"expired": expired, "pending": int(left)}


def _fail_for_timeout(session: Session, gate: Gate, now: datetime) -> None:
    task = session.get(Task, gate.task_id, populate_existing=True)
    waiting = waiting_status(gate.kind)
    if task is None or task.status != waiting.value:
        return  # the task moved on some other way; the gate only records that nobody answered
    what = "human review" if gate.kind == REVIEW else f"{gate.kind} approval"
    waited = _waited((now - gate.requested_at).total_seconds())
    error = f"nobody answered the {what} in {waited}"
    reason = REVIEW_TIMEOUT if gate.kind == REVIEW else APPROVAL_TIMEOUT
    task = tasks.transition(
        session, task.id, [waiting], S.FAILED, error=error, failure_reason=reason, finished_at=now
    )
    tasks.system_event(session, task, "failed", error, error=reason)
    tasks.wake(session, task, request_id(task.id, gate.kind, gate.round))
