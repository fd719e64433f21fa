"""Finding rows the caller may see. Another user's row is 'not found', never 'forbidden'."""

from __future__ import annotations

import functools
import uuid

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session, joinedload

from functions.api.auth import Principal
from functions.api.errors import NotFound
from functions.api.models import Project, Server, Task


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def project(
    session: Session, principal: Principal, id_or_name: str, for_update: bool = False, shown: bool = False
) -> Project:
    """`shown`: the project is answered whole, so its deployment (for `deployed_url`) comes in the same
    query (not with `for_update`: PostgreSQL cannot lock the outer join's nullable side)."""
    stmt = _project_by(_is_uuid(id_or_name), for_update, shown)
    row = session.execute(stmt, {"key": id_or_name}).scalar_one_or_none()
    if row is None or not (principal.sees_all() or row.owner_id == principal.user_id):
        raise NotFound(f"project {id_or_name!r} not found")
    return row


@functools.cache
def _project_by(by_id: bool, for_update: bool, shown: bool) -> Select[Project]:
    """Each of the few shapes of the lookup built once, the id or name a bind parameter: a statement built
    per request (its clauses, then SQLAlchemy's cache key of them) cost more than running it."""
    stmt = select(Project).where((Project.id if by_id else Project.name) == bindparam("key"))
    if for_update:
        return stmt.with_for_update()
    if shown:
        return stmt.options(joinedload(Project.deployment))
    return stmt


def task(session: Session, principal: Principal, task_id: str) -> Task:
    row = session.get(Task, task_id) if _is_uuid(task_id) else None
    if row is None or not (principal.sees_all() or row.user_id == principal.user_id):
        raise NotFound(f"task {task_id!r} not found")
    return row


def server(session: Session, principal: Principal, handle: str, for_update: bool = False) -> Server:
    stmt = select(Server).where(Server.handle == handle)
    if for_update:
        stmt = stmt.with_for_update()
    row = session.execute(stmt).scalar_one_or_none()
    if row is None or not (principal.sees_all() or row.owner_id == principal.user_id or is_builtin(row)):
        raise NotFound(f"server {handle!r} not found")
    return row


def is_builtin(server: Server) -> bool:
    """The embedded stack's `localhost` server: every user may deploy to it."""
    return (server.labels or {}).get("builtin") == "true"
