"""`db.insert_together`: a new task and its outbox row in one INSERT on PostgreSQL (one flush of both on
SQLite), leaving both as a flush would: persistent, every column loaded, unset columns SQL NULL."""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, String, inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from functions.api.db import _insert_values, insert_together
from functions.api.models import OutboxMessage, Task, new_id, utcnow
from tests.api_support import ApiHarness
from tests.benchmarks.bench_api import count_statements


def _new_pair(project_id: str, user_id: str) -> tuple[Task, OutboxMessage]:
    task = Task(id=new_id(), project_id=project_id, user_id=user_id, type="engineering", spec="x", params={})
    row = OutboxMessage(queue="engineering:queue", body="{}", task_id=task.id, created_at=utcnow())
    return task, row


def _owner_and_project(api: ApiHarness) -> tuple[str, str]:
    project = api.new_project("blog")
    return project["owner_id"], project["id"]


def test_both_rows_go_in_one_statement_and_stay_loaded_and_persistent(api: ApiHarness) -> None:
    owner_id, project_id = _owner_and_project(api)
    postgres = api.deps.db.engine.dialect.name == "postgresql"
    task, row = _new_pair(project_id, owner_id)
    with api.deps.db.session() as session:
        with count_statements(api.deps.db.engine) as inserting:
            insert_together(session, task, row)
        inserts = [sql for sql in inserting.sql if not sql.startswith("BEGIN")]
        assert len(inserts) == (1 if postgres else 2), inserts
        with count_statements(api.deps.db.engine) as reading:
            seen = {column.key: getattr(task, column.key) for column in inspect(Task).column_attrs}
            assert row.id is not None and row.attempts == 0 and row.sent_at is None
        assert reading.sql == [], "every column was loaded: nothing is read back"
        assert seen["status"] == "QUEUED" and seen["attempt"] == 0, "the Python defaults were written"
        assert seen["result"] is None and seen["correlation_id"]
        assert inspect(task).persistent and inspect(row).persistent
        task.status = "RUNNING"
        with count_statements(api.deps.db.engine) as updating:
            session.flush()
        assert [sql.split()[0] for sql in updating.sql] == ["UPDATE"], "a change later is an UPDATE"

    with api.deps.db.session() as session:
        stored = session.get(Task, task.id)
        assert (
            stored is not None
            and stored.status == "RUNNING"
            and stored.correlation_id == seen["correlation_id"]
        )
        assert session.execute(
            text("SELECT result IS NULL FROM tasks WHERE id = :id"), {"id": task.id}
        ).scalar()
        assert (
            session.execute(select(OutboxMessage.task_id).where(OutboxMessage.id == row.id)).scalar()
            == task.id
        )


def test_a_refused_row_fails_the_statement_and_neither_row_stays(api: ApiHarness) -> None:
    """A foreign key checked at the end of the statement: pg8000 raises it as ProgrammingError (as for a
    flush), SQLite as IntegrityError."""
    owner_id, _project_id = _owner_and_project(api)
    task, row = _new_pair("no-such-project", owner_id)
    with pytest.raises(DBAPIError), api.deps.db.session() as session:
        insert_together(session, task, row)
    with api.deps.db.session() as session:
        assert session.execute(select(Task.id)).all() == []
        assert session.execute(select(OutboxMessage.id)).all() == []


def test_an_unset_column_with_only_a_server_default_is_refused() -> None:
    """Its value would not be read back (the object would say None where the row holds the default); no
    model of the API has one today."""

    class Base(DeclarativeBase):
        pass

    class Note(Base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        kind: Mapped[str] = mapped_column(String(8), server_default="plain")
        body: Mapped[str | None] = mapped_column(String(80))

    assert _insert_values(Note(kind="x"))[Note.__table__.c.body] is not None, "unset: written as SQL NULL"
    with pytest.raises(ValueError, match="set kind"):
        _insert_values(Note(body="x"))


def test_a_savepoint_rolled_back_around_them_leaves_them_transient_and_nothing_is_published(
    api: ApiHarness,
) -> None:
    """As after a flush: the unit of work publishes only the outbox rows a savepoint did not roll back."""
    from pydantic import BaseModel

    from functions.api.services import outbox, unit_of_work

    class Message(BaseModel):
        task_id: str

    published: list[str] = []

    class Queue:
        def publish_raw(self, queue: str, body: str, attributes: dict[str, str]) -> None:
            published.append(attributes["outbox_id"])

    owner_id, project_id = _owner_and_project(api)
    api.deps.__dict__["queue"] = Queue()
    task, _row = _new_pair(project_id, owner_id)
    with unit_of_work.transaction() as session:
        with pytest.raises(RuntimeError), session.begin_nested():
            row = outbox.add_with(
                session, task, "engineering:queue", Message(task_id=task.id), task_id=task.id
            )
            assert inspect(task).persistent and inspect(row).persistent
            raise RuntimeError("something later in the savepoint failed")
        assert inspect(task).transient and inspect(row).transient
        assert task.status == "QUEUED", "its attributes stay, as a flushed object's do"
    assert published == []
    with api.deps.db.session() as session:
        assert (
            session.execute(select(Task.id)).all() == []
            and session.execute(select(OutboxMessage.id)).all() == []
        )


def test_the_first_objects_key_must_be_set(api: ApiHarness) -> None:
    """Only the second's generated key is read back."""
    if api.deps.db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite flushes both rows the ORM's way")
    owner_id, project_id = _owner_and_project(api)
    first = OutboxMessage(queue="q", body="{}", created_at=utcnow())
    _task, second = _new_pair(project_id, owner_id)
    with pytest.raises(ValueError, match="first object's key"), api.deps.db.session() as session:
        insert_together(session, first, second)
