"""/servers: deploy targets and their port allocations."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from sqlalchemy import delete, select, update

from functions.api.deps import get_deps
from functions.api.errors import Conflict, Forbidden, NotFound, Unprocessable
from functions.api.models import PortAllocation as PortAllocationRow
from functions.api.models import Project as ProjectRow
from functions.api.models import Server as ServerRow
from functions.api.models import utcnow
from functions.api.routers._common import (
    IdempotencyKeyHeader,
    created,
    idempotency_claim,
    principal,
    transaction,
)
from functions.api.services import incidents, lookup, servers
from shared.contracts.api import (
    PortAllocation,
    PortRequest,
    Server,
    ServerCheck,
    ServerCheckResult,
    ServerCreate,
)

router = APIGatewayHttpRouter()
TAGS = ["servers"]
HandleParam = Annotated[str, Path(description="The server's handle.", max_length=63)]


def _ssh_key_reference(handle: str) -> str:
    return f"secret://servers/{handle}/ssh_key"


@router.get("/servers", summary="List servers", tags=TAGS)
def list_servers() -> list[Server]:
    caller = principal(router)
    with transaction() as session:
        stmt = select(ServerRow).order_by(ServerRow.handle)
        rows = session.execute(stmt).scalars()
        return [
            Server.model_validate(s)
            for s in rows
            if caller.sees_all() or s.owner_id == caller.user_id or lookup.is_builtin(s)
        ]


@router.post("/servers", summary="Add a server", tags=TAGS, responses={201: {"description": "Created"}})
def add_server(body: ServerCreate, idempotency_key: IdempotencyKeyHeader = None) -> Response[Server]:
    if body.ssh_private_key and body.ssh_key_ref:
        raise Unprocessable(
            "give ssh_private_key or ssh_key_ref, not both", ["ssh_private_key", "ssh_key_ref"]
        )
    if "builtin" in body.labels and not principal(router).sees_all():
        raise Unprocessable("the label 'builtin' is reserved for servers an admin shares", ["labels"])
    reference = body.ssh_key_ref
    with transaction() as session:
        claim = idempotency_claim(router, session, idempotency_key, body)
        if claim.replay:
            return created(claim.replay.body, claim.replay.status)
        if session.execute(select(ServerRow.id).where(ServerRow.handle == body.handle)).first():
            # handles are unique across owners: the answer must not tell that someone has this server
            raise Conflict(f"the handle {body.handle!r} is not available", ["handle"])
        if body.ssh_private_key:
            reference = _ssh_key_reference(body.handle)
        row = servers.create(
            session, principal(router), body.handle, body.host, body.ssh_user, reference, body.labels
        )
        if body.ssh_private_key:
            # inside the transaction: if storing the key fails, the server is not created either
            get_deps().secrets.put(reference, body.ssh_private_key)  # type: ignore[arg-type]
        dto = Server.model_validate(row)
        claim.remember(session, dto, 201)
    return created(dto)


@router.get("/servers/<handle>", summary="Show a server", tags=TAGS)
def get_server(handle: HandleParam) -> Server:
    with transaction() as session:
        return Server.model_validate(lookup.server(session, principal(router), handle))


@router.delete("/servers/<handle>", summary="Remove a server and free its ports", tags=TAGS)
def remove_server(handle: HandleParam) -> Server:
    with transaction() as session:
        caller = principal(router)
        row = lookup.server(session, caller, handle, for_update=True)
        if not (caller.sees_all() or row.owner_id == caller.user_id):
            raise Forbidden(f"server {handle!r} is shared: only an admin can remove it")
        dto = Server.model_validate(row)
        session.execute(delete(PortAllocationRow).where(PortAllocationRow.server_id == row.id))
        session.delete(row)
    if dto.ssh_key_ref == _ssh_key_reference(handle):
        get_deps().secrets.delete(dto.ssh_key_ref)
    return dto


@router.post(
    "/servers/<handle>/ports",
    summary="Allocate a port on a server for a project (atomic)",
    tags=TAGS,
    responses={
        201: {"description": "Allocated"},
        200: {"description": "The project already holds this port"},
        409: {"description": "Taken or none left"},
    },
)
def allocate_port(handle: HandleParam, body: PortRequest) -> Response[PortAllocation]:
    caller = principal(router)
    settings = get_deps().settings
    with transaction() as session:
        server = lookup.server(session, caller, handle)
        project = lookup.project(session, caller, body.project_id)
        row, is_new = servers.allocate_port(
            session,
            server,
            project,
            body.port,
            (settings.port_range_start, settings.port_range_end),
            settings,
        )
        dto = PortAllocation(
            server_handle=server.handle, port=row.port, project_id=project.id, created_at=row.created_at
        )
    return created(dto, 201 if is_new else 200)


@router.get("/servers/<handle>/ports", summary="Ports allocated on a server", tags=TAGS)
def list_ports(handle: HandleParam) -> list[PortAllocation]:
    with transaction() as session:
        caller = principal(router)
        server = lookup.server(session, caller, handle)
        stmt = select(PortAllocationRow).where(PortAllocationRow.server_id == server.id)
        if not (caller.sees_all() or server.owner_id == caller.user_id):
            # a shared server: a user sees the ports of their own projects only
            stmt = stmt.join(ProjectRow, ProjectRow.id == PortAllocationRow.project_id).where(
                ProjectRow.owner_id == caller.user_id
            )
        rows = session.execute(stmt.order_by(PortAllocationRow.port)).scalars()
        return [
            PortAllocation(
                server_handle=server.handle, port=r.port, project_id=r.project_id, created_at=r.created_at
            )
            for r in rows
        ]


@router.delete(
    "/servers/<handle>/ports/<port>", summary="Free a project's port (after an undeploy)", tags=TAGS
)
def free_port(handle: HandleParam, port: Annotated[int, Path(ge=1, le=65535)]) -> PortAllocation:
    caller = principal(router)
    with transaction() as session:
        server = lookup.server(session, caller, handle)
        row = session.execute(
            select(PortAllocationRow).where(
                PortAllocationRow.server_id == server.id, PortAllocationRow.port == port
            )
        ).scalar_one_or_none()
        try:
            if row is None:
                raise NotFound("no allocation")
            lookup.project(session, caller, row.project_id)  # only the project's owner frees it
        except NotFound:
            # someone else's port on a shared server answers as a free one: no project id, no owner
            raise NotFound(f"port {port} is not allocated on {handle}") from None
        dto = PortAllocation(
            server_handle=server.handle, port=row.port, project_id=row.project_id, created_at=row.created_at
        )
        session.delete(row)
        return dto


@router.post(
    "/internal/servers/<handle>/check",
    summary="Record a reachability check; changed=true for exactly one reporter of a flip",
    tags=["internal"],
)
def record_check(handle: HandleParam, body: ServerCheck) -> ServerCheckResult:
    caller = principal(router)
    caller.require_service()
    with transaction() as session:
        row = lookup.server(session, caller, handle)
        previous = row.status
        now = utcnow()
        values: dict[str, object] = {"checked_at": now}
        if body.facts:
            values["facts"] = body.facts
        result = session.execute(
            update(ServerRow)
            .where(ServerRow.id == row.id, ServerRow.status == previous)
            .values(status=body.status, **values)
            .execution_options(synchronize_session=False)
        )
        changed = result.rowcount == 1 and previous != body.status
        session.refresh(row)
        if changed and previous != "unknown":
            text = (f"server {row.handle} ({row.host}) does not answer" if body.status == "unreachable"
                    else f"server {row.handle} ({row.host}) answers again")  # fmt: skip
            kind = "server_unreachable" if body.status == "unreachable" else "server_up"
            incidents.record(session, row.owner_id, kind, text, server_id=row.id)
        return ServerCheckResult(server=Server.model_validate(row), previous_status=previous, changed=changed)
