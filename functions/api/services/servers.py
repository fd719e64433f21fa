"""Servers and atomic port allocation."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from functions.api.auth import Principal
from functions.api.errors import Conflict, Unprocessable
from functions.api.models import PortAllocation, Project, Server, new_id, utcnow
from functions.api.services import limits
from functions.api.settings import ApiSettings
from shared.secrets.scope import SecretScope, reference_allowed

ALLOCATION_ATTEMPTS = 8


def allocate_port(
    session: Session,
    server: Server,
    project: Project,
    requested: int | None,
    port_range: tuple[int, int],
    settings: ApiSettings | None = None,
) -> tuple[PortAllocation, bool]:
    """The port of `project` on `server`: (allocation, changed). Two concurrent calls never get one port,
    and a project holds at most one port per server (unique (server, project)): asking for another
    port moves its allocation instead of adding a second one.

    The server row is locked first (SELECT ... FOR UPDATE on Postgres; SQLite transactions are
    already serialised by BEGIN IMMEDIATE); the unique constraints are the backstop, with a retry
    inside a savepoint if one ever fires. With `settings`, a first port on a server the project's
    owner does not own counts against `limit_shared_ports_per_user`.
    """
    session.execute(select(Server.id).where(Server.id == server.id).with_for_update())
    existing = session.execute(
        select(PortAllocation)
        .where(PortAllocation.server_id == server.id, PortAllocation.project_id == project.id)
        .order_by(PortAllocation.created_at, PortAllocation.id)
        .limit(1)
    ).scalar_one_or_none()
    if existing is not None and (requested is None or existing.port == requested):
        return existing, False
    if existing is None and settings is not None:
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


def create(session: Session, principal: Principal, handle: str, host: str, ssh_user: str,
           ssh_key_ref: str | None, labels: dict[str, str]) -> Server:  # fmt: skip
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
