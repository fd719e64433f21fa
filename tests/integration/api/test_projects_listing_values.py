"""GET /projects reads its rows without SQLAlchemy's column types (stored JSON text and driver times go
through C parsers, `services.projects.list_page`): what it answers must be byte for byte what the same
projects answer when loaded as ORM objects, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import select

from functions.api.auth import Principal
from functions.api.models import Deployment, Project, Server
from functions.api.services import projects
from shared.contracts.api import Page
from shared.contracts.projects import Project as ProjectView
from tests.api_support import ApiHarness

PULL_REQUESTS = [
    {"number": 7, "title": 'Grüße, 日本, "quotes" and \\ and \u2028', "draft": False, "head": None},
    {"number": 2**53 + 1, "score": 0.1, "ratio": 1.0, "big": 10**30, "tags": [], "nested": {"a": [1, {}]}},
]


def _vary(api: ApiHarness) -> None:
    """Projects with each kind of value the listing converts: JSON lists (nested, non-ASCII, large numbers,
    floats), nulls, times from another zone, a live and a stopped deployment."""
    for name in ("plain", "synced", "deployed", "stopped"):
        api.new_project(name)
    with api.deps.db.session() as session:
        rows = {p.name: p for p in session.scalars(select(Project))}
        synced = rows["synced"]
        synced.modules = ["backend", "frontend", "bot_2"]
        synced.repo_pull_requests = PULL_REQUESTS
        synced.repo_head = "abc123"
        synced.repo_missing = True
        synced.repo_checked_at = datetime(2026, 3, 1, 23, 30, 0, 5, tzinfo=timezone(timedelta(hours=-5)))
        synced.updated_at = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)  # no microseconds: SQLite's text differs
        synced.domain, synced.approval, synced.agent = "synced.example.com", "deploy,plan", "codex"
        synced.repo_url, synced.description = "https://example.com/r.git", "line\nbreak"
        server = Server(handle="box", host="10.0.0.1", owner_id=synced.owner_id)
        session.add(server)
        session.flush()
        for name, status in (("deployed", "deployed"), ("stopped", "stopped")):
            session.add(
                Deployment(
                    project_id=rows[name].id,
                    server_id=server.id,
                    port=8000 + len(name),
                    url=f"https://{name}.example.com",
                    health_url=f"https://{name}.example.com/health",
                    status=status,
                )
            )


def test_a_listed_page_is_byte_for_byte_the_orm_objects_answer(api: ApiHarness) -> None:
    # given
    _vary(api)
    admin = Principal(
        user_id="admin", telegram_id=None, is_admin=True, scopes=frozenset({"admin"}), key_id="k"
    )

    # when
    with api.deps.db.session() as session:
        listed, cursor = projects.list_page(session, admin, 3, None)
        rest, _ = projects.list_page(session, admin, 3, cursor)
    with api.deps.db.session() as session:
        loaded = session.scalars(select(Project).order_by(Project.created_at, Project.id)).all()
        expected = [ProjectView.model_validate(row) for row in loaded]

    # then
    assert (
        Page[ProjectView](items=listed + rest, next_cursor=None).model_dump_json()
        == Page[ProjectView](items=expected, next_cursor=None).model_dump_json()
    )
    assert {p.name: p.deployed_url for p in listed + rest}["deployed"] == "https://deployed.example.com"
    assert cursor is not None and len(listed) == 3 and len(rest) == 1


def test_each_listed_project_is_what_its_own_page_answers(api: ApiHarness) -> None:
    _vary(api)

    items = api.get("/projects").body["items"]

    assert [item["name"] for item in items] == ["plain", "synced", "deployed", "stopped"]
    for item in items:
        assert item == api.get(f"/projects/{item['id']}").body
    synced = next(item for item in items if item["name"] == "synced")
    assert synced["repo_pull_requests"] == PULL_REQUESTS
    assert synced["repo_checked_at"] == "2026-03-02T04:30:00.000005Z"
    assert synced["updated_at"] == "2026-12-04T00:00:00Z"


def test_listed_times_are_utc_whatever_the_sessions_time_zone(api: ApiHarness) -> None:
    """A listing's times are the same instants in UTC whatever the session's TimeZone (a PostgreSQL server or
    role configured for another zone)."""
    from sqlalchemy import text

    _vary(api)
    admin = Principal(
        user_id="admin", telegram_id=None, is_admin=True, scopes=frozenset({"admin"}), key_id="k"
    )
    with api.deps.db.session() as session:
        utc, _ = projects.list_page(session, admin, 10, None)
    with api.deps.db.session() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SET LOCAL TIME ZONE 'Asia/Kolkata'"))
        shifted, _ = projects.list_page(session, admin, 10, None)

    assert [p.model_dump_json() for p in shifted] == [p.model_dump_json() for p in utc]
    synced = next(p for p in shifted if p.name == "synced")
    assert synced.model_dump(mode="json")["repo_checked_at"] == "2026-03-02T04:30:00.000005Z"
