"""A request's outbox rows are claimed in their INSERT and published after the commit; what a crash
leaves between the two is published by the sweep once the lease has run out (at least once)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from functions.api.models import OutboxMessage, utcnow
from functions.api.services import outbox, unit_of_work
from tests.api_support import ApiHarness


def _rows(api: ApiHarness) -> list[OutboxMessage]:
    with api.deps.db.session() as session:
        return list(session.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars())


def test_a_published_row_is_marked_sent_and_never_swept_again(api: ApiHarness) -> None:
    api.new_project("blog")
    assert api.post("/projects/blog/engineering", {"spec": "x"}).status == 202

    [row] = _rows(api)
    assert row.sent_at is not None and row.claimed_until is None and row.attempts == 1
    assert outbox.sweep(api.deps.db, api.deps.queue, 3600)["claimed"] == 0
    assert len(api.deps.queue.receive("engineering:queue", visibility_timeout=30)) == 1


def test_what_a_crash_after_the_commit_left_is_swept_once_the_lease_ran_out(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.new_project("blog")
    monkeypatch.setattr(unit_of_work, "_publish_now", lambda rows: None)  # the process died after commit
    assert api.post("/projects/blog/engineering", {"spec": "x"}).status == 202
    monkeypatch.undo()
    [row] = _rows(api)
    assert row.sent_at is None and row.claimed_until is not None, "committed, claimed by the request"
    with api.deps.db.session() as session:  # old enough for the sweep, but the lease still holds
        session.execute(update(OutboxMessage).values(created_at=utcnow() - timedelta(seconds=60)))

    assert outbox.sweep(api.deps.db, api.deps.queue, 3600)["claimed"] == 0, "the request may still publish it"
    with api.deps.db.session() as session:
        session.execute(update(OutboxMessage).values(claimed_until=utcnow() - timedelta(seconds=1)))
    swept = outbox.sweep(api.deps.db, api.deps.queue, 3600)

    assert (swept["claimed"], swept["sent"]) == (1, 1)
    assert len(api.deps.queue.receive("engineering:queue", visibility_timeout=30)) == 1
    assert _rows(api)[0].attempts == 2


def test_a_row_a_savepoint_rolled_back_is_not_published(api: ApiHarness) -> None:
    from shared.contracts import WORKER_COMMANDS, DeleteWorkerCommand

    with unit_of_work.transaction() as session:
        outbox.add(session, WORKER_COMMANDS, DeleteWorkerCommand(worker_id="kept"))
        with pytest.raises(RuntimeError), session.begin_nested():
            outbox.add(session, WORKER_COMMANDS, DeleteWorkerCommand(worker_id="rolled-back"))
            raise RuntimeError("the savepoint fails")

    published = api.deps.queue.receive(WORKER_COMMANDS, visibility_timeout=30)
    assert [json.loads(m.body)["worker_id"] for m in published] == ["kept"]
    assert [r.sent_at is not None for r in _rows(api)] == [True]
