"""Servers come back whole: a server that answers again after being unreachable is provisioned again,
and every project whose current release lives there is redeployed from its release record.

Two steps, each safe to repeat:
- `request` (in the transaction whose compare-and-set saw the flip, so once per flip) queues a
  `ProvisionerMessage(is_recovery=True)` whose request id names the server and the flip;
- the provisioner runs the provision playbook and calls `redeploy` with that id: one deploy task per
  project, created as the project's owner, whose correlation id is derived from (recovery id,
  project). The project row is locked while looking for that task, so a redelivered or concurrent
  recovery finds the first one's task and starts nothing; an incident tells the owner once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from functions.api.auth import Principal
from functions.api.errors import Conflict
from functions.api.models import (
    Deployment,
    PortAllocation,
    Project,
    Release,
    Server,
    Task,
    User,
)
from functions.api.services import incidents, lookup, outbox, tasks
from shared.contracts import PROVISIONER_QUEUE, ProvisionerMessage, server_check_id
from shared.contracts.api import TaskType
from shared.contracts.recovery import RedeployedProject, ServerRecovery
from shared.contracts.servers import Server as ServerDto

RECOVERY_NAMESPACE = uuid.UUID("5b7c2a4e-2f7d-4c55-9a43-1f0e9d6c8b21")


def recovery_id(server: Server, flip_id: str) -> str:
    """The request id of one recovery: one per server and flip (the incident that recorded it)."""
    return server_check_id("recovery", server.handle, flip_id)


def request(session: Session, server: Server, flip_id: str) -> str:
    """Queue the provisioner's recovery run for `server`, in the caller's transaction: its request id."""
    ports = session.execute(
        select(PortAllocation.port).where(PortAllocation.server_id == server.id).order_by(PortAllocation.port)
    ).scalars()
    message = ProvisionerMessage(
        request_id=recovery_id(server, flip_id),
        server_handle=server.handle,
        job_type="provision",
        is_recovery=True,
        open_ports=sorted(set(ports)),
    )
    outbox.add(session, PROVISIONER_QUEUE, message)
    return message.request_id


def redeploy_key(recovery: str, project_id: str) -> str:
    """The correlation id of the redeploy of `project_id` in `recovery`: the same for every repeat."""
    return str(uuid.uuid5(RECOVERY_NAMESPACE, f"{recovery}|{project_id}"))


@dataclass(frozen=True)
class Serving:
    """What a project serves on the server: the ref to redeploy and the release it came from."""

    project_id: str
    ref: str | None
    release: int | None


def serving_on(session: Session, server: Server) -> list[Serving]:
    """Every project deployed on `server` (its one `deployed` row there), with what it serves: its
    current (`serving`) release's commit, or, for a deployment made before releases, the ref it
    recorded (a stopped project is not brought back)."""
    rows = session.execute(
        select(Deployment.project_id, Deployment.ref, Release.commit_sha, Release.number)
        .outerjoin(
            Release,
            and_(
                Release.project_id == Deployment.project_id,
                Release.status == "serving",
                Release.server_id == server.id,
            ),
        )
        .where(Deployment.server_id == server.id, Deployment.status == "deployed")
        .order_by(Deployment.project_id)
    ).all()
    return [
        Serving(project_id, sha, number) if sha else Serving(project_id, ref, None)
        for project_id, ref, sha, number in rows
    ]


def _owner_principal(owner: User) -> Principal:
    """The project's owner as the redeploy's requester: the task is theirs, so they hear of it."""
    return Principal(
        user_id=owner.id,
        telegram_id=owner.telegram_id,
        is_admin=False,
        scopes=frozenset({"user"}),
        key_id="server-recovery",
    )


def _existing(session: Session, project_id: str, key: str) -> Task | None:
    return session.execute(
        select(Task).where(Task.project_id == project_id, Task.correlation_id == key).limit(1)
    ).scalar_one_or_none()


def _active_deploy(session: Session, project_id: str) -> Task | None:
    for kind in (TaskType.DEPLOY, TaskType.UNDEPLOY):
        running = tasks.active_of_type(session, project_id, kind)
        if running is not None:
            return running
    return None


def _redeploy_one(session: Session, server: Server, recovery: str, serving: Serving) -> RedeployedProject:
    project = session.execute(
        select(Project).where(Project.id == serving.project_id).with_for_update()
    ).scalar_one()
    shown = RedeployedProject(
        project_id=project.id, project_name=project.name, ref=serving.ref, release=serving.release
    )
    key = redeploy_key(recovery, project.id)
    done = _existing(session, project.id, key)
    if done is not None:
        return shown.model_copy(update={"task_id": done.id})
    running = _active_deploy(session, project.id)
    if running is not None:
        why = f"a {running.type} already runs (task {running.id})"
        return shown.model_copy(update={"skipped": why})
    owner = session.get(User, project.owner_id)
    if owner is None or project.status == "archived":
        return shown.model_copy(update={"skipped": "archived" if owner else "its owner is gone"})
    params = {"server": server.handle, "recovery": True} | ({"ref": serving.ref} if serving.ref else {})
    try:
        task, _message = tasks.create(
            session, _owner_principal(owner), project, TaskType.DEPLOY, None, params, correlation_id=key
        )
    except Conflict as exc:
        return shown.model_copy(update={"skipped": exc.message})
    what = f"release {serving.release}" if serving.release else (serving.ref or "main")
    told = f"server {server.handle} ({server.host}) is back: {project.name} is redeployed from {what}"
    incidents.record(
        session,
        project.owner_id,
        "service_redeployed",
        f"{told} (task {task.id})",
        project_id=project.id,
        server_id=server.id,
    )
    # the task's first event: in `task logs`, and in Telegram for an owner who uses it (the notifier's
    # status message of this task starts with why it runs)
    tasks.system_event(session, task, "progress", told)
    return shown.model_copy(update={"task_id": task.id, "created": True})


def redeploy(session: Session, caller: Principal, handle: str, recovery: str) -> ServerRecovery:
    """One redeploy task per project whose current release lives on the server (see the module)."""
    caller.require_service()
    server = lookup.server(session, caller, handle, for_update=True)
    projects = [_redeploy_one(session, server, recovery, s) for s in serving_on(session, server)]
    return ServerRecovery(server=ServerDto.model_validate(server), recovery_id=recovery, projects=projects)
