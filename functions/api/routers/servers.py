"""/servers: deploy targets and their port allocations."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path

from functions.api.deps import get_deps
from functions.api.errors import Unprocessable
from functions.api.routers._common import (
    IdempotencyKeyHeader,
    created,
    idempotent_request,
    new_router,
    principal,
    replied,
    transaction,
)
from functions.api.services import idempotency, lookup, recovery, servers
from shared.contracts.api import (
    PortAllocation,
    PortRequest,
    Server,
    ServerCheck,
    ServerCheckResult,
    ServerCreate,
)
from shared.contracts.recovery import ServerRecovery, ServerRecoveryStart, ServerUpdate, ServerUpdated

router = new_router()
TAGS = ["servers"]
HandleParam = Annotated[str, Path(description="The server's handle.", max_length=63)]


@router.get("/servers", summary="List servers", tags=TAGS)
def list_servers() -> list[Server]:
    caller = principal(router)
    with transaction() as session:
        return [Server.model_validate(s) for s in servers.list_visible(session, caller)]


@router.post("/servers", summary="Add a server", tags=TAGS, responses={201: {"description": "Created"}})
def add_server(body: ServerCreate, idempotency_key: IdempotencyKeyHeader = None) -> Response[Server]:
    if body.ssh_private_key and body.ssh_key_ref:
        raise Unprocessable(
            "give ssh_private_key or ssh_key_ref, not both", ["ssh_private_key", "ssh_key_ref"]
        )
    caller = principal(router)
    if "builtin" in body.labels and not caller.sees_all():
        raise Unprocessable("the label 'builtin' is reserved for servers an admin shares", ["labels"])
    request = idempotent_request(router, idempotency_key, body)
    with transaction() as session:
        reply = idempotency.once(
            session,
            request,
            201,
            lambda: Server.model_validate(servers.add(session, get_deps(), caller, body)),
        )
    return replied(reply)


@router.get("/servers/<handle>", summary="Show a server", tags=TAGS)
def get_server(handle: HandleParam) -> Server:
    with transaction() as session:
        return Server.model_validate(lookup.server(session, principal(router), handle))


@router.delete("/servers/<handle>", summary="Remove a server and free its ports", tags=TAGS)
def remove_server(handle: HandleParam) -> Server:
    with transaction() as session:
        dto = Server.model_validate(servers.remove(session, principal(router), handle))
    if dto.ssh_key_ref == servers.ssh_key_reference(handle):  # a key it uploaded goes with it
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
        dto, is_new = servers.allocate_for(
            session, settings, caller, handle, body.project_id, body.port, body.slot
        )
    return created(dto, 201 if is_new else 200)


@router.get("/servers/<handle>/ports", summary="Ports allocated on a server", tags=TAGS)
def list_ports(handle: HandleParam) -> list[PortAllocation]:
    with transaction() as session:
        return servers.list_ports(session, principal(router), handle)


@router.delete(
    "/servers/<handle>/ports/<port>", summary="Free a project's port (after an undeploy)", tags=TAGS
)
def free_port(handle: HandleParam, port: Annotated[int, Path(ge=1, le=65535)]) -> PortAllocation:
    caller = principal(router)
    with transaction() as session:
        return servers.free_port(session, caller, handle, port)


@router.post(
    "/internal/servers/<handle>/check",
    summary="Record a reachability check; changed=true for exactly one reporter of a flip",
    tags=["internal"],
)
def record_check(handle: HandleParam, body: ServerCheck) -> ServerCheckResult:
    caller = principal(router)
    caller.require_service()
    with transaction() as session:
        row, previous, changed = servers.record_check(session, caller, handle, body)
        return ServerCheckResult(server=Server.model_validate(row), previous_status=previous, changed=changed)


@router.post(
    "/internal/servers/<handle>/recover",
    summary="Redeploy every project whose current release lives on a recovered server (once per recovery)",
    tags=["internal"],
)
def recover_server(handle: HandleParam, body: ServerRecoveryStart) -> ServerRecovery:
    caller = principal(router)
    with transaction() as session:
        return recovery.redeploy(session, caller, handle, body.recovery_id)


@router.patch(
    "/servers/<handle>",
    summary="Change a server's host or ssh user; a new host is a replaced machine, recovered like one back "
    "from an outage (provisioned again, its projects redeployed)",
    tags=TAGS,
    responses={403: {"description": "A shared server: admins only"}},
)
def update_server(
    handle: HandleParam, body: ServerUpdate, idempotency_key: IdempotencyKeyHeader = None
) -> Response[ServerUpdated]:
    caller = principal(router)
    request = idempotent_request(router, idempotency_key, body)

    def change() -> ServerUpdated:
        row, recovery_id = servers.change(session, caller, handle, body)
        return ServerUpdated(
            server=Server.model_validate(row), replaced=recovery_id is not None, recovery_id=recovery_id
        )

    with transaction() as session:
        reply = idempotency.once(session, request, 200, change)
    return replied(reply)
