"""Servers, their reachability checks and atomic port allocation."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from functions.api.auth import Principal
from functions.api.db import rows_changed
from functions.api.deps import ApiDeps
from functions.api.errors import Conflict, Forbidden, NotFound, Unprocessable
from functions.api.models import PortAllocation, Project, Server, new_id, utcnow
from functions.api.services import incidents, limits, lookup, recovery
from functions.api.settings import ApiSettings
from shared.contracts.api import PortAllocation as PortAllocationDto
from shared.contracts.api import ServerCheck, ServerCreate
from shared.contracts.recovery import ServerUpdate
from shared.secrets.scope import SecretScope, reference_allowed

ALLOCATION_ATTEMPTS = 8


def allocate_port(
    session: Session,
    server: Server,
    project: Project,
    requested: int | None,
    port_range: tuple[int, int],
    settings: ApiSettings | None = None,
    slot: str = "",
) -> tuple[PortAllocation, bool]:
    """The port of `project` on `server` for `slot` ("" its stable port, "a" / "b" a release slot's):
    (allocation, changed). Two concurrent calls never get one port, and a project holds at most one port
    per server and slot (unique (server, project, slot)): asking for another port moves that allocation
    instead of adding a second one.

    The server row is locked first (SELECT ... FOR UPDATE on Postgres; SQLite transactions are
    already serialised by BEGIN IMMEDIATE); the unique constraints are the backstop, with a retry
    inside a savepoint if one ever fires. With `settings`, a first port on a server the project's
    owner does not own counts against `limit_shared_ports_per_user` (its slots' ports do not count again).
    """
    session.execute(select(Server.id).where(Server.id == server.id).with_for_update())
    existing = session.execute(
        select(PortAllocation)
        .where(
            PortAllocation.server_id == server.id,
            PortAllocation.project_id == project.id,
            PortAllocation.slot == slot,
        )
        .order_by(PortAllocation.created_at, PortAllocation.id)
        .limit(1)
    ).scalar_one_or_none()
    if existing is not None and (requested is None or existing.port == requested):
        return existing, False
    if existing is None and settings is not None and not limits.holds_port(session, server, project):
        limits.check_new_port(session, settings, server, project)
    low, high = port_range
    for _attempt in range(ALLOCATION_ATTEMPTS):
        taken = set(
            session.execute(
                select(PortAllocation.port).where(PortAllocation.server_id == server.id)
            ).scalars()
        )
        if requested is not None:
            if requested in taken:
                raise Conflict(f"port {requested} on {server.handle} is already allocated", ["port"])
            port = requested
        else:
            port = next((p for p in range(low, high + 1) if p not in taken), 0)
            if not port:
                raise Conflict(f"no free port left on {server.handle} in {low}-{high}")
        try:
            with session.begin_nested():
                if existing is not None:
                    existing.port = port
                    row = existing
                else:
                    row = PortAllocation(
                        id=new_id(),
                        server_id=server.id,
                        port=port,
                        project_id=project.id,
                        slot=slot,
                        created_at=utcnow(),
                    )
                    session.add(row)
                session.flush()
            return row, True
        except IntegrityError:
            if existing is not None:
                session.refresh(existing)
            if requested is not None:
                raise Conflict(
                    f"port {requested} on {server.handle} is already allocated", ["port"]
                ) from None
    raise Conflict(f"could not allocate a port on {server.handle}: too much contention, try again")


def check_key_reference(principal: Principal, handle: str, reference: str) -> None:
    """A server's key is its own (`secret://servers/<handle>/...`) or, for an admin, a shared grant
    (`secret://shared/...`). One answer for every refusal: it never says whether the secret exists."""
    scope = SecretScope(server_handles=frozenset({handle}), shared=principal.is_admin)
    if not reference_allowed(reference, scope):
        raise Unprocessable(
            f"ssh_key_ref must name this server's own key (secret://servers/{handle}/ssh_key) "
            "or a shared reference an admin grants (secret://shared/...); "
            "to use another key, upload it with ssh_private_key",
            ["ssh_key_ref"],
        )


def create(
    session: Session,
    principal: Principal,
    handle: str,
    host: str,
    ssh_user: str,
    ssh_key_ref: str | None,
    labels: dict[str, str],
) -> Server:
    if session.execute(select(Server.id).where(Server.handle == handle)).first():
        raise Conflict(f"server {handle!r} already exists", ["handle"])
    if ssh_key_ref is not None:
        check_key_reference(principal, handle, ssh_key_ref)
    server = Server(
        id=new_id(),
        handle=handle,
        host=host,
        ssh_user=ssh_user,
        ssh_key_ref=ssh_key_ref,
        labels=labels,
        status="unknown",
        owner_id=principal.user_id,
        created_at=utcnow(),
    )
    session.add(server)
    session.flush()
    return server


def ssh_key_reference(handle: str) -> str:
    """Where an uploaded `ssh_private_key` is kept (and deleted with its server)."""
    return f"secret://servers/{handle}/ssh_key"


def list_visible(session: Session, caller: Principal) -> list[Server]:
    rows = session.execute(select(Server).order_by(Server.handle)).scalars()
    return [s for s in rows if caller.sees_all() or s.owner_id == caller.user_id or lookup.is_builtin(s)]


def add(session: Session, deps: ApiDeps, caller: Principal, body: ServerCreate) -> Server:
    """A new server; an uploaded key is stored inside the transaction, so a failed store adds no server."""
    if session.execute(select(Server.id).where(Server.handle == body.handle)).first():
        # handles are unique across owners: the answer must not tell that someone has this server
        raise Conflict(f"the handle {body.handle!r} is not available", ["handle"])
    reference = ssh_key_reference(body.handle) if body.ssh_private_key else body.ssh_key_ref
    row = create(session, caller, body.handle, body.host, body.ssh_user, reference, body.labels)
    if body.ssh_private_key and reference is not None:
        deps.secrets.put(reference, body.ssh_private_key)
    return row


def remove(session: Session, caller: Principal, handle: str) -> Server:
    """Delete the server and its port allocations; the caller deletes its uploaded key after the commit."""
    row = lookup.server(session, caller, handle, for_update=True)
    if not (caller.sees_all() or row.owner_id == caller.user_id):
        raise Forbidden(f"server {handle!r} is shared: only an admin can remove it")
    session.execute(delete(PortAllocation).where(PortAllocation.server_id == row.id))
    session.delete(row)
    return row


def port_dto(server: Server, row: PortAllocation) -> PortAllocationDto:
    return PortAllocationDto(
        server_handle=server.handle,
        port=row.port,
        project_id=row.project_id,
        created_at=row.created_at,
        slot=row.slot,
    )


def list_ports(session: Session, caller: Principal, handle: str) -> list[PortAllocationDto]:
    server = lookup.server(session, caller, handle)
    stmt = select(PortAllocation).where(PortAllocation.server_id == server.id)
    if not (caller.sees_all() or server.owner_id == caller.user_id):
        # a shared server: a user sees the ports of their own projects only
        stmt = stmt.join(Project, Project.id == PortAllocation.project_id).where(
            Project.owner_id == caller.user_id
        )
    rows = session.execute(stmt.order_by(PortAllocation.port)).scalars()
    return [port_dto(server, r) for r in rows]


def allocate_for(
    session: Session,
    settings: ApiSettings,
    caller: Principal,
    handle: str,
    project_id: str,
    port: int | None,
    slot: str = "",
) -> tuple[PortAllocationDto, bool]:
    server = lookup.server(session, caller, handle)
    project = lookup.project(session, caller, project_id)
    port_range = (settings.port_range_start, settings.port_range_end)
    row, is_new = allocate_port(session, server, project, port, port_range, settings, slot)
    return port_dto(server, row), is_new


def free_project_ports(
    session: Session, caller: Principal, handle: str, project_id: str
) -> list[PortAllocationDto]:
    """Every port `project_id` holds on the server (its stable port and both slots'), given back at once:
    what an undeploy frees. None held is an empty list (a repeat frees nothing more)."""
    server = lookup.server(session, caller, handle, for_update=True)
    project = lookup.project(session, caller, project_id)
    rows = list(
        session.execute(
            select(PortAllocation)
            .where(PortAllocation.server_id == server.id, PortAllocation.project_id == project.id)
            .order_by(PortAllocation.slot)
        ).scalars()
    )
    freed = [port_dto(server, row) for row in rows]
    for row in rows:
        session.delete(row)
    session.flush()
    return freed


def free_port(session: Session, caller: Principal, handle: str, port: int) -> PortAllocationDto:
    server = lookup.server(session, caller, handle)
    row = session.execute(
        select(PortAllocation).where(PortAllocation.server_id == server.id, PortAllocation.port == port)
    ).scalar_one_or_none()
    try:
        if row is None:
            raise NotFound("no allocation")
        lookup.project(session, caller, row.project_id)  # only the project's owner frees it
    except NotFound:
        # someone else's port on a shared server answers as a free one: no project id, no owner
        raise NotFound(f"port {port} is not allocated on {handle}") from None
    dto = port_dto(server, row)
    session.delete(row)
    return dto


def change(session: Session, caller: Principal, handle: str, body: ServerUpdate) -> tuple[Server, str | None]:
    """Change a server's host / ssh user: (server, recovery id). A new host is a replaced machine: its
    status is unknown again, and a recovery is queued in this transaction (provision it, redeploy every
    project deployed there). The caller's Idempotency-Key makes a repeat replay this answer."""
    row = lookup.server(session, caller, handle, for_update=True)
    if not (caller.sees_all() or row.owner_id == caller.user_id):
        raise Forbidden(f"server {handle!r} is shared: only an admin can change it")
    if body.host is None and body.ssh_user is None:
        raise Unprocessable("nothing to change: give host and/or ssh_user", ["host", "ssh_user"])
    if body.ssh_user is not None:
        row.ssh_user = body.ssh_user
    replaced = body.host is not None and body.host != row.host
    if body.host is not None:
        row.host = body.host
    session.flush()
    if not replaced:
        return row, None
    row.status, row.facts, row.checked_at = "unknown", {}, None
    return row, recovery.request(session, row, new_id())


def record_check(
    session: Session, caller: Principal, handle: str, check: ServerCheck
) -> tuple[Server, str, bool]:
    """A reachability check: (server, previous status, changed), changed for exactly one reporter of a
    flip (compare-and-set on the status), which also records the incident."""
    row = lookup.server(session, caller, handle)
    previous = row.status
    values: dict[str, object] = {"checked_at": utcnow()}
    if check.facts:
        values["facts"] = check.facts
    won = rows_changed(
        session,
        update(Server)
        .where(Server.id == row.id, Server.status == previous)
        .values(status=check.status, **values)
        .execution_options(synchronize_session=False),
    )
    changed = won == 1 and previous != check.status
    session.refresh(row)
    if changed and previous != "unknown":
        down = check.status == "unreachable"
        text = f"server {row.handle} ({row.host}) " + ("does not answer" if down else "answers again")
        incident = incidents.record(
            session, row.owner_id, "server_unreachable" if down else "server_up", text, server_id=row.id
        )
        if previous == "unreachable" and not down:
            # back after being lost: provision it again and redeploy what it served (once per flip)
            recovery.request(session, row, incident.id)
    return row, previous, changed
