"""Schema state, migrations vs models, and compare-and-set under real concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from functions.api.db import get_database
from functions.api.errors import Conflict
from functions.api.migrate import head_revision, upgrade
from functions.api.migrations import HEAD_REVISION
from functions.api.models import Base
from functions.api.services import servers, tasks
from shared.contracts.api import TaskStatus
from tests.api_support import ApiHarness, build_deps, install
from tests.factories import race as _race


def test_head_constant_matches_alembic() -> None:
    assert head_revision() == HEAD_REVISION


def test_migrations_match_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ: {diff}"


def test_unmigrated_database_gets_503_with_the_fix(tmp_path: Path) -> None:
    api = install(build_deps(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path / "home"))
    reply = api.get("/projects")
    assert reply.status == 503 and reply.body["code"] == "schema_out_of_date"
    assert "orchestrator db upgrade" in reply.body["message"]
    health = api.as_key(None).get("/health")
    assert health.status == 503 and health.body["database"] == "schema_out_of_date"

    upgrade(get_database(f"sqlite:///{tmp_path / 'empty.db'}").engine)
    assert api.get("/projects").status == 200, "recovers once migrated, without a restart"


def test_unreachable_database_is_503_on_health(tmp_path: Path) -> None:
    api = install(build_deps("postgresql+pg8000://nobody@127.0.0.1:9/none", tmp_path / "home"))
    health = api.as_key(None).get("/health")
    assert health.status == 503 and health.body["database"] == "unreachable"


def test_twenty_concurrent_claims_one_winner(api: ApiHarness, database_url: str) -> None:
    api.new_project("blog")
    tid = api.post("/projects/blog/engineering", {"spec": "x"}).body["id"]
    db = api.deps.db

    def claim(_i: int) -> str:
        with db.session() as session:
            return tasks.transition(session, tid, [TaskStatus.QUEUED], TaskStatus.RUNNING).status

    results = _race(20, claim)
    winners = [r for r in results if r == "RUNNING"]
    losers = [r for r in results if isinstance(r, Conflict)]
    assert len(winners) == 1 and len(losers) == 19, results


def test_twenty_concurrent_port_allocations_are_distinct(api: ApiHarness, database_url: str) -> None:
    api.post("/servers", {"handle": "localhost", "host": "127.0.0.1"})
    project_ids = [api.new_project(f"p{i:02d}")["id"] for i in range(20)]
    db = api.deps.db

    def allocate(i: int) -> int:
        from functions.api.models import Project, Server

        with db.session() as session:
            server = session.query(Server).filter_by(handle="localhost").one()
            project = session.get(Project, project_ids[i])
            row, _ = servers.allocate_port(session, server, project, None, (8000, 8999))
            return row.port

    ports = _race(20, allocate)
    assert all(isinstance(p, int) for p in ports), ports
    assert sorted(ports) == list(range(8000, 8020))  # type: ignore[type-var]


@pytest.mark.parametrize("n", [3])
def test_outbox_rows_survive_a_failed_publish_and_the_sweep_sends_them(api: ApiHarness, n: int) -> None:
    from functions.api.services import outbox

    class DownQueue:
        backend = "down"

        def publish_raw(self, *args: object, **kwargs: object) -> str:
            raise ConnectionError("queue backend is down")

    real_queue = api.deps.queue
    api.deps.__dict__["queue"] = DownQueue()
    api.new_project("blog")
    ids = [api.post("/projects/blog/engineering", {"spec": f"s{i}"}) for i in range(n)]
    assert all(r.status == 202 for r in ids), (
        "the API still accepts the task; the message waits in the outbox"
    )
    assert outbox.pending_count(api.deps.db) == n

    report = outbox.dispatch(api.deps.db, real_queue)
    assert (report.sent, report.failed) == (n, 0)
    assert outbox.pending_count(api.deps.db) == 0
    assert outbox.dispatch(api.deps.db, real_queue).claimed == 0, "a sent row is never sent again"
    received = real_queue.receive("engineering:queue", 10, visibility_timeout=30)
    assert len(received) == n


def test_the_sweep_prunes_old_sent_rows_and_never_unsent_ones(api: ApiHarness) -> None:
    from datetime import timedelta

    from sqlalchemy import select, update

    from functions.api.models import OutboxMessage, utcnow
    from functions.api.services import outbox

    api.new_project("blog")
    for i in range(3):
        assert api.post("/projects/blog/engineering", {"spec": f"s{i}"}).status == 202
    with api.deps.db.session() as session:
        rows = sorted(session.execute(select(OutboxMessage.id)).scalars())
        old = utcnow() - outbox.SENT_KEPT - timedelta(hours=1)
        session.execute(update(OutboxMessage).where(OutboxMessage.id == rows[0]).values(sent_at=old))
        session.execute(update(OutboxMessage).where(OutboxMessage.id == rows[1]).values(sent_at=None))
    assert outbox.prune_sent(api.deps.db) == 1  # the old sent row; the fresh one and the unsent one stay
    with api.deps.db.session() as session:
        assert sorted(session.execute(select(OutboxMessage.id)).scalars()) == rows[1:]
    assert outbox.prune_sent(api.deps.db) == 0


def test_two_dispatchers_racing_publish_each_row_once(api: ApiHarness) -> None:
    from functions.api.services import outbox

    sent: list[str] = []
    lock = threading.Lock()

    class CountingQueue:
        backend = "counting"

        def publish_raw(self, queue: str, body: str, attributes: dict[str, str] | None = None) -> str:
            with lock:
                sent.append(body)
            return "id"

    api.deps.__dict__["queue"] = CountingQueue()
    api.new_project("blog")
    sent.clear()
    with api.deps.db.session() as session:
        from functions.api.models import Project

        project = session.query(Project).one()
        from shared.contracts import EngineeringMessage

        for i in range(30):
            outbox.add(
                session,
                "engineering:queue",
                EngineeringMessage(task_id=f"t{i}", project_id=project.id, user_id=0),
            )
    _race(4, lambda _i: outbox.dispatch(api.deps.db, api.deps.queue))
    assert len(sent) == 30 and len(set(sent)) == 30
