"""Servers and atomic port allocation."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from functions.api.auth import Principal
from functions.api.errors import Conflict, Unprocessable
from functions.api.models import PortAllocation, Project, Server, new_id, utcnow

ALLOCATION_ATTEMPTS = 8


def allocate_port(
    session: Session,
    server: Server,
    project: Project,
    requested: int | None,
    port_range: tuple[int, int],
) -> tuple[PortAllocation, bool]:
    """A port on `server` for `project`: (allocation, created). Two concurrent calls never get one port.

    The server row is locked first (SELECT ... FOR UPDATE on Postgres; SQLite transactions are
    already serialised by BEGIN IMMEDIATE); the unique (server, port) constraint is the backstop,
    with a retry inside a savepoint if it ever fires.
    """
    session.execute(select(Server.id).where(Server.id == server.id).with_for_update())
    existing = session.execute(
        select(PortAllocation).where(
            PortAllocation.server_id == server.id, PortAllocation.project_id == project.id
        )
    ).scalar_one_or_none()
    if existing is not None and (requested is None or existing.port == requested):
        return existing, False
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
                row = PortAllocation(
                    id=new_id(), server_id=server.id, port=port, project_id=project.id, created_at=utcnow()
                )
                session.add(row)
                session.flush()
            return row, True
        except IntegrityError:
            if requested is not None:
                raise Conflict(
                    f"port {requested} on {server.handle} is already allocated", ["port"]
                ) from None
    raise Conflict(f"could not allocate a port on {server.handle}: too much contention, try again")


def create(session: Session, principal: Principal, handle: str, host: str, ssh_user: str,
           ssh_key_ref: str | None, labels: dict[str, str]) -> Server:  # fmt: skip
    if session.execute(select(Server.id).where(Server.handle == handle)).first():
        raise Conflict(f"server {handle!r} already exists", ["handle"])
    if ssh_key_ref is not None and not ssh_key_ref.startswith("secret://"):
        raise Unprocessable("ssh_key_ref must be a secret:// reference", ["ssh_key_ref"])
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
