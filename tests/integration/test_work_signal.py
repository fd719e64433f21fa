"""The work signal's two adapters (SQLite, DynamoDB on moto) behave alike: marks, reads and the settle
rule that keeps a job from forgetting work whose transaction may not have committed yet."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared.work_signal import (
    REMARK_S,
    SETTLE_S,
    WorkKind,
    WorkSignalPort,
    WorkSignalSettings,
    build_work_signal,
)
from shared.work_signal.dynamodb import PARTITION_KEY, DynamoDbWorkSignal
from shared.work_signal.local import SqliteWorkSignal
from shared.work_signal.port import RecentMarks

Clock = list[float]


@pytest.fixture(params=["local", "dynamodb"])
def signal_and_clock(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[WorkSignalPort, Clock]]:
    clock: Clock = [1_000_000.0]
    now: Callable[[], float] = lambda: clock[0]  # noqa: E731
    if request.param == "local":
        yield SqliteWorkSignal(tmp_path / "signal.db", clock=now), clock
        return
    with mock_aws():
        yield moto_work_signal(now), clock


def moto_work_signal(clock: Callable[[], float]) -> DynamoDbWorkSignal:
    """The DynamoDB adapter on a table shaped as the stack's (inside `mock_aws`)."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(
        TableName="work",
        KeySchema=[{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": PARTITION_KEY, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return DynamoDbWorkSignal("work", client, clock=clock)


def test_no_marks_until_something_is_marked(signal_and_clock: tuple[WorkSignalPort, Clock]) -> None:
    signal, clock = signal_and_clock
    assert signal.marks() == {}
    signal.mark([WorkKind.TASKS, WorkKind.OUTBOX])
    signal.mark([])
    assert signal.marks() == {WorkKind.TASKS: clock[0], WorkKind.OUTBOX: clock[0]}


def test_a_mark_settles_only_once_older_than_the_settle_time(
    signal_and_clock: tuple[WorkSignalPort, Clock],
) -> None:
    signal, clock = signal_and_clock
    signal.mark([WorkKind.TASKS])
    seen_at = clock[0] + SETTLE_S / 2
    assert signal.settle(WorkKind.TASKS, seen_at) is False  # its transaction may still be open
    assert WorkKind.TASKS in signal.marks()
    seen_at = clock[0] + SETTLE_S + 1
    assert signal.settle(WorkKind.TASKS, seen_at) is True
    assert signal.marks() == {}
    assert signal.settle(WorkKind.TASKS, seen_at) is False  # nothing to settle


def test_a_mark_made_after_the_read_survives_the_settle(
    signal_and_clock: tuple[WorkSignalPort, Clock],
) -> None:
    # given a job read the marks long after the first mark, then new work was marked before it settled
    signal, clock = signal_and_clock
    signal.mark([WorkKind.OUTBOX, WorkKind.PROJECTS])
    clock[0] += 10 * SETTLE_S
    seen_at = clock[0]
    signal.mark([WorkKind.OUTBOX])
    # then that kind keeps its mark, the other goes
    assert signal.settle(WorkKind.OUTBOX, seen_at) is False
    assert signal.settle(WorkKind.PROJECTS, seen_at) is True
    assert set(signal.marks()) == {WorkKind.OUTBOX}


def test_kinds_a_newer_version_wrote_are_ignored(tmp_path: Path) -> None:
    signal = SqliteWorkSignal(tmp_path / "signal.db")
    with sqlite3.connect(tmp_path / "signal.db") as conn:
        conn.execute("INSERT INTO marks VALUES ('from-the-future', 1.0)")
    assert signal.marks() == {}


def test_a_mark_of_several_kinds_is_one_commit(tmp_path: Path) -> None:
    """Each commit appends the pages it changed to the write-ahead log: a mark of three kinds that were all
    marked before appends what a mark of one does (it used to commit once per kind)."""
    clock = [1_000_000.0]
    signal = SqliteWorkSignal(tmp_path / "signal.db", clock=lambda: clock[0])
    kinds = [WorkKind.TASKS, WorkKind.OUTBOX, WorkKind.GATES]
    signal.mark(kinds)

    def frames_written_by(mark: Callable[[], None]) -> int:
        clock[0] += REMARK_S  # past the time a store leaves a kind it marked alone
        with sqlite3.connect(tmp_path / "signal.db") as log:
            log.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            mark()
            return int(log.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])

    one_kind = frames_written_by(lambda: signal.mark([WorkKind.TASKS]))
    three_kinds = frames_written_by(lambda: signal.mark(kinds))

    assert one_kind > 0
    assert three_kinds == one_kind
    assert set(signal.marks()) == set(kinds)


def test_a_kind_marked_lately_is_not_written_again(tmp_path: Path) -> None:
    """Within REMARK_S of its own mark a store writes nothing (the API's writes mark as they go: one write
    to the store per request before); past it, or once a job settled the mark, it writes again."""
    clock = [1_000_000.0]
    signal = SqliteWorkSignal(tmp_path / "signal.db", clock=lambda: clock[0])
    signal.mark([WorkKind.TASKS])

    def frames_written_by(mark: Callable[[], None]) -> int:
        with sqlite3.connect(tmp_path / "signal.db") as log:
            log.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            mark()
            return int(log.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])

    clock[0] += REMARK_S - 0.5
    assert frames_written_by(lambda: signal.mark([WorkKind.TASKS])) == 0
    assert frames_written_by(lambda: signal.mark([WorkKind.TASKS, WorkKind.OUTBOX])) > 0, (
        "a new kind is written"
    )
    assert signal.marks() == {WorkKind.TASKS: 1_000_000.0, WorkKind.OUTBOX: clock[0]}
    clock[0] = 1_000_000.0 + REMARK_S
    assert frames_written_by(lambda: signal.mark([WorkKind.TASKS])) > 0
    assert signal.marks()[WorkKind.TASKS] == clock[0]


def test_a_settled_mark_is_written_again_at_once(signal_and_clock: tuple[WorkSignalPort, Clock]) -> None:
    """A job whose read came SETTLE_S after the mark (by its clock) forgot it: so does this store."""
    signal, clock = signal_and_clock
    signal.mark([WorkKind.TASKS, WorkKind.OUTBOX])
    assert signal.settle(WorkKind.TASKS, clock[0] + SETTLE_S + 1)
    clock[0] += 1
    signal.mark([WorkKind.TASKS, WorkKind.OUTBOX])
    assert signal.marks() == {WorkKind.TASKS: clock[0], WorkKind.OUTBOX: clock[0] - 1}


def test_a_clock_stepped_back_writes_the_kind_again() -> None:
    """Before its own mark by the store's clock: it cannot tell how long ago that was."""
    recent = RecentMarks()
    recent.written([WorkKind.TASKS], 100.0)
    assert recent.due([WorkKind.TASKS], 100.0 + REMARK_S - 0.1) == []
    assert recent.due([WorkKind.TASKS], 99.0) == [WorkKind.TASKS]
    assert recent.due([WorkKind.TASKS], 100.0 + REMARK_S) == [WorkKind.TASKS]


def test_the_factory_needs_a_table_for_dynamodb(tmp_path: Path) -> None:
    assert build_work_signal(WorkSignalSettings(home=tmp_path)).backend == "local"
    with pytest.raises(ValueError, match="ORCH_WORK_SIGNAL_TABLE"):
        build_work_signal(WorkSignalSettings(work_signal_backend="dynamodb"))


# -- the API's writes mark it ------------------------------------------------------------------------


def test_the_apis_writes_mark_their_kind_of_work_and_reads_do_not(tmp_path: Path) -> None:
    from functions.api.db import dispose_all
    from functions.api.deps import set_deps
    from tests.api_support import build_deps, install, migrated_sqlite

    api = install(build_deps(migrated_sqlite(tmp_path / "api.db"), tmp_path / "home"))
    try:
        signal = api.deps.work_signal
        api.new_user("alice")
        assert signal.marks() == {}, "a user is no work for a scheduled job"
        api.new_project("blog")
        assert set(signal.marks()) == {WorkKind.PROJECTS}
        api.get("/projects/blog")
        api.get("/tasks")
        assert set(signal.marks()) == {WorkKind.PROJECTS}, "reads mark nothing"
        api.post("/projects/blog/engineering", {"spec": "x"})
        assert set(signal.marks()) == {WorkKind.PROJECTS, WorkKind.TASKS, WorkKind.OUTBOX}
    finally:
        set_deps(None)
        dispose_all()


def test_a_write_whose_mark_fails_is_not_committed(tmp_path: Path) -> None:
    from functions.api.db import dispose_all
    from functions.api.deps import set_deps
    from shared.work_signal import WorkSignalError
    from tests.api_support import build_deps, install, migrated_sqlite

    class Down:
        backend = "down"

        def mark(self, kinds: Any) -> None:
            raise WorkSignalError("table unreachable")

    api = install(build_deps(migrated_sqlite(tmp_path / "api.db"), tmp_path / "home"))
    try:
        api.deps.__dict__["work_signal"] = Down()
        reply = api.post("/projects", {"name": "blog"})
        assert reply.status >= 500
        del api.deps.__dict__["work_signal"]
        assert api.get("/projects").body["items"] == [], "the project was rolled back with its missing mark"
    finally:
        set_deps(None)
        dispose_all()


# -- snapshots: what a job last read from the API, and when ------------------------------------------


def test_a_snapshot_is_kept_with_its_read_time(signal_and_clock: tuple[WorkSignalPort, Clock]) -> None:
    signal, _clock = signal_and_clock
    assert signal.load_snapshot("health_checker") is None
    data = {"targets": [{"project_id": "p1", "health_url": "http://h/health", "health": "up"}]}
    assert signal.save_snapshot("health_checker", data, 1234.5) is True
    assert signal.load_snapshot("health_checker") == (data, 1234.5)
    assert signal.load_snapshot("another_job") is None
    assert signal.marks() == {}, "a snapshot is not a mark"
    signal.mark([WorkKind.DEPLOYMENTS])
    assert set(signal.marks()) == {WorkKind.DEPLOYMENTS}
    assert signal.load_snapshot("health_checker") == (data, 1234.5), "a mark leaves the snapshot alone"


def test_of_two_overlapping_saves_the_later_read_wins(signal_and_clock: tuple[WorkSignalPort, Clock]) -> None:
    signal, _clock = signal_and_clock
    assert signal.save_snapshot("health_checker", {"targets": ["later"]}, 200.0) is True
    # a job that read earlier and saves last does not put its older view back
    assert signal.save_snapshot("health_checker", {"targets": ["earlier"]}, 100.0) is False
    assert signal.load_snapshot("health_checker") == ({"targets": ["later"]}, 200.0)
    # the same read, saved again with a changed state (a reported flip), replaces it
    assert signal.save_snapshot("health_checker", {"targets": ["later", "flipped"]}, 200.0) is True
    assert signal.load_snapshot("health_checker") == ({"targets": ["later", "flipped"]}, 200.0)


def test_a_read_covers_only_marks_older_than_the_settle_time() -> None:
    from shared.work_signal import covered

    read_at = 10_000.0
    assert covered(read_at - SETTLE_S - 1, read_at), "that transaction had committed: the read saw it"
    assert not covered(read_at - SETTLE_S, read_at), "it may still have been open"
    assert not covered(read_at + 5, read_at), "marked after the read"
