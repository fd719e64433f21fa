"""Round trips to PostgreSQL per request (issue 24): pg8000 waits on the network three times per statement
with parameters and for `commit`, and once for each BEGIN; `functions.api.pg_wire` sends each statement's
messages at once, the BEGIN with them. Counted as pg8000's socket flushes, each followed by a read of the
answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from pg8000 import core
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from functions.api import pg_wire
from functions.api.db import PING_AFTER_IDLE_S
from tests.api_support import ApiHarness, reset_postgres
from tests.conftest import POSTGRES_URL_ENV
from tests.integration.api.test_statements_per_request import requests_of

# request -> round trips, for a person's key verified a moment ago and a connection used a moment ago (no
# liveness check): one per statement (the transaction's BEGIN goes in front of the first), one per commit.
# pg8000's own way, with the check: 11 / 8 / 17 / 31.
BOUNDS = {
    "get project": 1,
    "list projects": 1,
    "create project": 5,
    # a transaction (the task and its outbox row one INSERT), then the row marked sent (autocommit) after the publish
    "create engineering task": 6,
}


@dataclass
class Counted:
    flushes: int = 0


@contextmanager
def count_round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counted]:
    counted = Counted()
    flush = core._flush

    def counting(sock: object) -> None:
        counted.flushes += 1
        flush(sock)

    with monkeypatch.context() as patch:
        patch.setattr(core, "_flush", counting)
        yield counted


@pytest.fixture
def database_url(_postgres_database: str | None) -> str:
    """PostgreSQL only (the package's fixture also runs SQLite, which has no round trips)."""
    if _postgres_database is None:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set: no PostgreSQL to test against (CI sets it)")
    reset_postgres(_postgres_database)
    return _postgres_database


@pytest.fixture
def alice(api: ApiHarness) -> ApiHarness:
    _, key = api.new_user("alice", telegram_id=42)
    person = api.as_key(key)
    assert person.post("/projects", {"name": "blog"}).status == 201
    assert person.get("/me").status == 200  # the key is verified (and cached) like on any busy API
    return person


@pytest.mark.parametrize("request_name", list(BOUNDS))
def test_round_trips_per_request_stay_within_their_bound(
    alice: ApiHarness, monkeypatch: pytest.MonkeyPatch, request_name: str
) -> None:
    send = requests_of(alice)[request_name]
    with count_round_trips(monkeypatch) as counted:
        reply = send()
    assert reply.status < 300, reply
    assert counted.flushes <= BOUNDS[request_name]


def test_a_statement_with_parameters_is_one_round_trip_and_pg8000s_own_way_three(
    api: ApiHarness, alice: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pg_wire.PIPELINED, "pg8000's internals changed: statements went back to three round trips"
    statement = text("SELECT name, created_at FROM projects WHERE name = :name")
    with api.deps.db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))  # the transaction is open: no BEGIN below
        with count_round_trips(monkeypatch) as pipelined:
            rows = connection.execute(statement, {"name": "blog"}).all()
        raw = connection.connection.dbapi_connection
        assert raw is not None
        with monkeypatch.context() as patch:
            patch.delattr(raw, "execute_unnamed")  # pg8000's own method again
            with count_round_trips(monkeypatch) as own:
                again = connection.execute(statement, {"name": "blog"}).all()
    assert (pipelined.flushes, own.flushes) == (1, 3)
    assert rows == again and [row.name for row in rows] == ["blog"]
    assert rows[0].created_at.tzinfo is not None


VALUES_OF_EVERY_KIND = text(
    "SELECT 'héllo ✓'::text AS txt, NULL::text AS n, 42 AS i, -7::bigint AS b, 3.50::numeric AS d, true AS f,"
    ' \'{"a": [1, "é"], "b": null}\'::jsonb AS j, \'2024-01-02 03:04:05.123456+05:30\'::timestamptz AS ts,'
    " 'infinity'::timestamptz AS inf, '1900-01-01 00:00:00'::timestamp AS naive, '\\x00ff'::bytea AS raw,"
    " ARRAY[1, 2, NULL]::int[] AS arr, ''::text AS empty, repeat('x', 70000) AS long,"
    " '11111111-2222-3333-4444-555555555555'::uuid AS u, interval '1 day 2 hours' AS span, g AS g"
    " FROM generate_series(1, :rows) AS g"
)


def test_rows_read_by_the_wire_s_own_loop_are_pg8000s_values(
    api: ApiHarness, alice: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pg_wire` decodes each DataRow itself: every kind of value comes back as pg8000 returns it, on a
    statement's first run (its RowDescription in the same answer) and prepared (readers known before)."""
    statement = VALUES_OF_EVERY_KIND.bindparams(rows=3)
    with api.deps.db.engine.connect() as connection:
        raw: Any = connection.connection.dbapi_connection
        assert "handle_messages" in vars(raw), "the connection reads with pg_wire's loop"
        first = connection.execute(statement).all()
        prepared = connection.execute(statement).all()
        with monkeypatch.context() as patch:
            patch.delattr(raw, "handle_messages")  # pg8000's own loop
            own = connection.execute(statement).all()
    assert first == prepared == own
    assert [row.g for row in own] == [1, 2, 3] and own[0].txt == "héllo ✓" and own[0].n is None
    assert len(own[0].long) == 70000 and own[0].raw == b"\x00\xff" and own[0].arr == [1, 2, None]


def test_an_error_in_a_pipelined_statement_is_raised_and_the_connection_goes_on(
    api: ApiHarness, alice: ApiHarness
) -> None:
    with api.deps.db.engine.connect() as connection:
        with pytest.raises(Exception, match="no_such_column"):
            connection.execute(text("SELECT no_such_column FROM projects WHERE name = :n"), {"n": "x"})
        connection.rollback()
        assert (
            connection.execute(text("SELECT count(*) FROM projects WHERE name = :n"), {"n": "blog"}).scalar()
            == 1
        )


def test_the_begin_goes_with_the_first_statement_and_an_empty_transaction_sends_nothing(
    api: ApiHarness, alice: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    with api.deps.db.engine.connect() as connection:
        connection.commit()  # the pool's liveness check opened a transaction; now none is open
        with count_round_trips(monkeypatch) as first:
            connection.execute(text("SET LOCAL statement_timeout = 1234"))  # no effect outside a transaction
        in_transaction = connection.execute(text("SHOW statement_timeout")).scalar()
        connection.rollback()
        after = connection.execute(text("SHOW statement_timeout")).scalar()
        connection.rollback()
        raw = connection.connection.dbapi_connection
        assert raw is not None
        with count_round_trips(monkeypatch) as empty:
            raw.cursor().execute("begin transaction")  # what pg8000's cursor does before a statement
            raw.commit()
    assert first.flushes == 1
    assert (in_transaction, after) == ("1234ms", "0")
    assert empty.flushes == 0


def _prepared_on_server(connection: Any) -> list[str]:
    """The statements this session holds prepared on the server (the catalog read itself is a plain
    statement without parameters: not prepared)."""
    found = connection.exec_driver_sql("SELECT statement FROM pg_prepared_statements ORDER BY prepare_time")
    return [row[0] for row in found]


def _parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    parsed: list[str] = []
    parse = pg_wire._parse_body

    def counting(self: Any, name: bytes, statement: str, oids: Any = ()) -> bytes:
        parsed.append(statement)
        return parse(self, name, statement, oids)

    monkeypatch.setattr(pg_wire, "_parse_body", counting)
    return parsed


def test_a_statement_is_parsed_once_per_connection_and_then_only_bound_and_executed(
    api: ApiHarness, alice: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    statement = text("SELECT name, created_at FROM projects WHERE name = :name AND 'parsed once' <> ''")
    parsed = _parses(monkeypatch)
    with api.deps.db.engine.connect() as connection:
        first = connection.execute(statement, {"name": "blog"}).all()
        with count_round_trips(monkeypatch) as again:
            second = connection.execute(statement, {"name": "blog"}).all()
            missing = connection.execute(statement, {"name": "nothing"}).all()
        held = _prepared_on_server(connection)
    expected = "SELECT name, created_at FROM projects WHERE name = $1 AND 'parsed once' <> ''"
    assert [p for p in parsed if "parsed once" in p] == [expected]
    assert again.flushes == 2, "one round trip each, as before"
    assert first == second and missing == [] and second[0].created_at.tzinfo is not None
    assert expected in held


def test_a_statement_that_failed_is_not_kept_and_ones_the_server_dropped_are_prepared_again(
    api: ApiHarness, alice: ApiHarness
) -> None:
    read = text("SELECT count(*) FROM projects WHERE name = :n AND 'prepared again' <> ''")
    write = text("UPDATE projects SET description = :d WHERE name = :n AND 'prepared again' <> ''")
    with api.deps.db.engine.connect() as connection:
        with pytest.raises(Exception, match="no_such_column"):
            connection.execute(text("SELECT no_such_column FROM projects WHERE name = :n"), {"n": "x"})
        connection.rollback()
        assert connection.execute(read, {"n": "blog"}).scalar() == 1
        connection.execute(write, {"d": "one", "n": "blog"})
        connection.commit()
        assert not [s for s in _prepared_on_server(connection) if "no_such_column" in s]
        # the server forgets them (what DISCARD ALL, or a pooler's reset, does)
        connection.exec_driver_sql("DEALLOCATE ALL")
        connection.commit()
        # a read before any transaction is run again at once, prepared anew
        assert connection.execute(read, {"n": "blog"}).scalar() == 1
        connection.execute(write, {"d": "two", "n": "blog"})  # prepared anew too
        connection.commit()
        connection.exec_driver_sql("DEALLOCATE ALL")
        connection.commit()
        # a write (in its transaction) ends the connection: to SQLAlchemy a disconnect, so the pool replaces
        # it and the API answers 503 + Retry-After; nothing of the transaction is done
        with pytest.raises(DBAPIError, match="connection is closed") as dropped:
            connection.execute(write, {"d": "lost", "n": "blog"})
        assert dropped.value.connection_invalidated
        connection.rollback()
        connection.execute(write, {"d": "three", "n": "blog"})
        connection.commit()
        assert connection.execute(
            text("SELECT description FROM projects WHERE name = :n"), {"n": "blog"}
        ).scalar() == ("three")


def test_a_statements_own_errors_keep_the_connection_and_its_other_statements(
    api: ApiHarness, alice: ApiHarness
) -> None:
    """A statement's own feature_not_supported (not the server's "cached plan must not change result type")
    is an ordinary error; a statement whose parameter's type a migration changed fails once, then is
    parsed again; a value the connection cannot encode is refused before anything is sent."""
    part = text("SELECT date_part(:unit, now() - now()) AS own_error")
    with api.deps.db.engine.connect() as connection:
        connection.exec_driver_sql("CREATE TEMP TABLE typed (code int)")
        connection.exec_driver_sql("INSERT INTO typed VALUES (1)")
        connection.commit()
        by_code = text("SELECT count(*) FROM typed WHERE code = :code")
        assert connection.execute(by_code, {"code": 1}).scalar() == 1
        assert connection.execute(part, {"unit": "day"}).scalar() == 0
        with pytest.raises(DBAPIError, match="not supported for type interval") as own:
            connection.execute(part, {"unit": "dow"})
        assert not own.value.connection_invalidated
        connection.rollback()
        connection.exec_driver_sql("ALTER TABLE typed ALTER COLUMN code TYPE text")
        connection.commit()
        with pytest.raises(DBAPIError, match="operator does not exist"):  # planned for an int parameter
            connection.execute(by_code, {"code": "1"})
        connection.rollback()
        with pytest.raises(UnicodeEncodeError):
            connection.execute(text("SELECT :v AS surrogate"), {"v": "bad\ud800"})
        connection.rollback()
        assert connection.execute(by_code, {"code": "1"}).scalar() == 1  # parsed again for text
        assert [connection.execute(text("SELECT :a + 100"), {"a": a}).scalar() for a in (1, 2)] == [101, 102]


def test_a_connection_keeps_at_most_its_bound_of_prepared_statements(
    api: ApiHarness, alice: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    with api.deps.db.engine.connect() as connection:
        monkeypatch.setattr(connection.connection.dbapi_connection, "orch_prepared_limit", 3)
        for i in range(6):
            assert connection.execute(text(f"SELECT {i} + :x AS bounded"), {"x": 1}).scalar() == i + 1
        held = [s for s in _prepared_on_server(connection) if "bounded" in s]
        assert connection.execute(text("SELECT 0 + :x AS bounded"), {"x": 1}).scalar() == 1  # prepared again
    # the three kept, and the one evicted last, whose Close goes out with the connection's next statement
    assert held == [f"SELECT {i} + $1 AS bounded" for i in (2, 3, 4, 5)]


def test_prepared_statements_can_be_turned_off_for_a_pooler(database_url: str) -> None:
    """ORCH_DATABASE_PREPARED_STATEMENTS=0 (PgBouncer in transaction mode): every statement unnamed, as
    before, still one round trip each."""
    from functions.api.db import make_engine

    engine = make_engine(database_url, prepared_statements=0)
    try:
        with engine.connect() as connection:
            for _ in range(3):
                assert connection.execute(text("SELECT 1 + :x AS unprepared"), {"x": 1}).scalar() == 2
            assert not [s for s in _prepared_on_server(connection) if "unprepared" in s]
    finally:
        engine.dispose()


def test_a_rewritten_statement_text_is_remembered_and_is_the_same_as_pg8000s() -> None:
    from pg8000 import dbapi, legacy

    pg_wire.remember_converted_statements()
    pg_wire.remember_converted_statements()  # once is enough: not wrapped twice
    convert = legacy.convert_paramstyle
    assert convert.original is not None and not hasattr(convert.original, "remembered")
    assert hasattr(dbapi.convert_paramstyle, "remembered")
    statements = [
        "SELECT a FROM t WHERE b = %s AND c = %s",
        "SELECT '%%s', \"x%%\" FROM t WHERE d LIKE 'a%%' AND e = %s -- %s\n",
        "UPDATE t SET v = %s WHERE id = %s RETURNING $$%s$$",
    ]
    args = ("x", 2)
    for sql in statements:
        assert convert("format", sql, args) == convert.original("format", sql, args)
    before = convert.remembered.cache_info().hits
    for sql in statements:
        assert convert("format", sql, args)[1] is args
    assert convert.remembered.cache_info().hits - before == len(statements)
    # named styles take their values by the names in the text: converted every time, as pg8000 does
    assert convert("named", "SELECT :a, :b", {"a": 1, "b": 2}) == ("SELECT $1, $2", (1, 2))


def test_a_connection_idle_in_the_pool_is_checked_first_and_one_used_a_moment_ago_is_not(
    api: ApiHarness, alice: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    with count_round_trips(monkeypatch) as warm:
        assert alice.get("/projects/blog").status == 200
    _idle_all(api, seconds=PING_AFTER_IDLE_S + 1)
    with count_round_trips(monkeypatch) as idle:
        assert alice.get("/projects/blog").status == 200
    assert (warm.flushes, idle.flushes) == (1, 2)


def test_a_connection_dropped_under_a_request_is_a_503_and_the_next_request_reconnects(
    api: ApiHarness, alice: ApiHarness
) -> None:
    # given: the pool's connections were used a moment ago (not checked again), then the server drops them
    assert alice.get("/projects/blog").status == 200
    engine = api.deps.db.engine
    admin = create_engine(engine.url, poolclass=NullPool)
    with admin.begin() as connection:
        killed = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
    admin.dispose()
    assert killed and killed >= 1

    # when: the next requests come
    dropped = alice.get("/projects/blog")
    after = alice.get("/projects/blog")

    # then: a clear, retryable 503 (not a 500), and the pool has reconnected for the next one
    assert (dropped.status, dropped.body["code"]) == (503, "unavailable"), dropped
    assert dropped.headers.get("Retry-After") == "1"
    assert after.status == 200 and after.body["name"] == "blog"


class _ResetOnRead:
    """A socket file whose next read finds the connection reset by the server (what a killed backend
    gives when the reset arrives before the answer is read, instead of an end of file)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def read(self, size: int = -1) -> bytes:
        raise ConnectionResetError(104, "Connection reset by peer")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_connection_reset_while_reading_is_a_disconnect_not_a_stray_oserror(
    api: ApiHarness, alice: ApiHarness
) -> None:
    from sqlalchemy.exc import DBAPIError

    with api.deps.db.engine.connect() as connection:
        raw: Any = connection.connection.dbapi_connection
        raw._sock = _ResetOnRead(raw._sock)
        with pytest.raises(DBAPIError) as raised:
            connection.execute(text("SELECT count(*) FROM projects WHERE name = :n"), {"n": "blog"})
    assert raised.value.connection_invalidated, raised.value
    assert "network error" in str(raised.value)
    assert alice.get("/projects/blog").status == 200  # the pool dropped it and reconnects


def _idle_all(api: ApiHarness, seconds: float) -> None:
    """Every pooled connection as if checked in `seconds` ago."""
    pool: Any = api.deps.db.engine.pool  # a QueuePool: its idle connections
    for record in list(pool._pool.queue):
        raw = record.dbapi_connection
        raw.orch_checked_in_at -= seconds


# -- reads before the transaction (READ COMMITTED) -------------------------------------------------------


def _state_of(admin: Any, pid: int) -> str:
    with admin.connect() as connection:
        return str(
            connection.execute(
                text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ).scalar()
        )


def test_reads_open_no_transaction_and_the_first_write_after_them_is_still_rolled_back(
    api: ApiHarness, alice: ApiHarness
) -> None:
    engine = api.deps.db.engine
    admin = create_engine(engine.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.commit()
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
            assert isinstance(pid, int)
            described = connection.execute(
                text("SELECT description FROM projects WHERE name = 'blog'")
            ).scalar()
            after_reads = _state_of(admin, pid)
            connection.execute(text("UPDATE projects SET description = 'changed' WHERE name = 'blog'"))
            after_write = _state_of(admin, pid)
            connection.rollback()
        with admin.connect() as other:
            now = other.execute(text("SELECT description FROM projects WHERE name = 'blog'")).scalar()
    finally:
        admin.dispose()
    assert (after_reads, after_write) == ("idle", "idle in transaction")
    assert now == described != "changed"


def test_a_locking_read_opens_the_transaction_and_holds_its_lock_until_commit(
    api: ApiHarness, alice: ApiHarness
) -> None:
    engine = api.deps.db.engine
    admin = create_engine(engine.url, poolclass=NullPool)
    lock = text("SELECT id FROM projects WHERE name = 'blog' FOR UPDATE NOWAIT")
    try:
        with engine.connect() as connection:
            connection.commit()
            connection.execute(text("SELECT id FROM projects WHERE name = 'blog' FOR UPDATE"))
            with admin.connect() as other, pytest.raises(Exception, match="could not obtain lock"):
                other.execute(lock)
            connection.commit()
        with admin.connect() as other:
            assert other.execute(lock).scalar() is not None
    finally:
        admin.dispose()


def _repeatable_read_engine(url: Any) -> Any:
    """An engine whose sessions run at REPEATABLE READ from the start, then pipelined."""
    engine = create_engine(url, poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _connect(raw: Any, _record: Any) -> None:
        cursor = raw.cursor()
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        raw.commit()
        pg_wire.pipeline_statements(raw)

    return engine


def test_above_read_committed_reads_stay_in_the_transaction_and_share_its_snapshot(
    api: ApiHarness, alice: ApiHarness
) -> None:
    engine = _repeatable_read_engine(api.deps.db.engine.url)
    admin = create_engine(api.deps.db.engine.url, poolclass=NullPool)
    count = text("SELECT count(*) FROM projects")
    try:
        with engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert raw is not None and raw.orch_reads_first is False
            first = connection.execute(count).scalar()
            with admin.begin() as other:
                other.execute(text("UPDATE projects SET name = 'renamed' WHERE name = 'blog'"))
                other.execute(text("DELETE FROM projects WHERE name = 'renamed'"))
            second = connection.execute(count).scalar()
            connection.rollback()
            # a session switched back to READ COMMITTED reads first again, and away from it does not
            connection.execute(
                text("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED")
            )
            connection.commit()
            assert raw.orch_reads_first is True
            connection.execute(
                text("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            )
            connection.commit()
            assert raw.orch_reads_first is False
    finally:
        engine.dispose()
        admin.dispose()
    assert first == second == 1  # one snapshot for the whole transaction, the delete after it unseen


@pytest.mark.parametrize(
    ("statement", "reads_first"),
    [
        ("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED", True),
        ("set session characteristics as transaction isolation level repeatable read", False),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", False),
        ("SET default_transaction_isolation = 'serializable'", False),
        ("SET default_transaction_isolation TO 'read committed'", True),
        ("SET SESSION default_transaction_isolation = 'repeatable read';", False),
        ("SET transaction_isolation = 'read committed'", True),
        ("SET something_isolation_related = 1", False),  # unknown: reads stay in the transaction
    ],
)
def test_a_set_of_the_isolation_level_is_followed(statement: str, reads_first: bool) -> None:
    connection = type("Connection", (), {"orch_reads_first": not reads_first})()
    pg_wire._follow_isolation(connection, statement)
    assert connection.orch_reads_first is reads_first
    connection.orch_reads_first = "untouched"
    pg_wire._follow_isolation(connection, "SET LOCAL statement_timeout = 5")
    assert connection.orch_reads_first == "untouched"


def test_what_counts_as_a_plain_read() -> None:
    reads = ["SELECT 1", "  select id from projects where name = $1", ";", "", "SELECT pg_backend_pid()"]
    others = [
        "SELECT id FROM projects FOR UPDATE",
        "SELECT id FROM projects FOR NO KEY UPDATE OF projects SKIP LOCKED",
        "SELECT id FROM projects FOR SHARE",
        "select id from t for key share",
        "SELECT pg_advisory_xact_lock(1)",
        "SELECT set_config('x.y', '1', true)",
        "SELECT nextval('s')",
        "SELECT * INTO copy FROM projects",
        "WITH moved AS (DELETE FROM t RETURNING *) SELECT * FROM moved",
        "INSERT INTO projects (name) VALUES ($1)",
        "SHOW statement_timeout",
        "SET LOCAL statement_timeout = 1",
    ]
    assert [pg_wire.plain_read(s) for s in reads] == [True] * len(reads)
    assert [pg_wire.plain_read(s) for s in others] == [False] * len(others)


def test_marking_outbox_rows_sent_waits_on_neither_the_disk_nor_the_answer(database_url: str) -> None:
    """The mark's transaction alone commits without waiting for its WAL flush, and its answer is read in
    front of the connection's next statement (lost in a crash, its rows are only published again); the
    next transaction on the connection commits durably as before."""
    from sqlalchemy import insert, select, update
    from sqlalchemy.orm import sessionmaker

    from functions.api.db import Database, make_engine
    from functions.api.models import OutboxMessage, utcnow
    from functions.api.services import outbox

    class Queue:
        def publish_raw(self, queue: str, body: str, attributes: dict[str, str]) -> None:
            published.append(attributes["outbox_id"])

    published: list[str] = []
    engine = make_engine(database_url)
    db = Database(engine, sessionmaker(engine, expire_on_commit=False))
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cu, sql, *_a: sent.append(sql))
    try:
        with db.session() as session:
            row_id = session.execute(
                insert(OutboxMessage)
                .values(queue="q", body="{}", created_at=utcnow(), attempts=1)
                .returning(OutboxMessage.id)
            ).scalar_one()
            row = session.get(OutboxMessage, row_id)
        assert row is not None
        report = outbox.publish_claimed(db, Queue(), [row])  # type: ignore[arg-type]
        assert (report.sent, published) == (1, [str(row_id)])
        [mark] = [sql for sql in sent if sql.startswith("UPDATE outbox")]
        assert "set_config" in mark
        with engine.connect() as connection:  # the pool's one connection: the mark's answer is still unread
            raw: Any = connection.connection.dbapi_connection
            assert len(raw.orch_unread) == 1 and not raw.orch_answer_later
            assert connection.execute(text("SHOW synchronous_commit")).scalar() == "on", "the mark's own"
            assert raw.orch_unread == []
            assert connection.execute(
                select(OutboxMessage.sent_at).where(OutboxMessage.id == row_id)
            ).scalar()
        assert db.run_alone(update(OutboxMessage).where(OutboxMessage.id == row_id).values(attempts=2)) == 1
        assert "set_config" not in sent[-1], "run_alone: durable, answered"
    finally:
        engine.dispose()


def test_a_statement_sent_unanswered_that_fails_is_logged_and_the_next_one_answers(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy import literal, update
    from sqlalchemy.orm import sessionmaker

    from functions.api.db import Database, make_engine
    from functions.api.models import OutboxMessage

    engine = make_engine(database_url)
    db = Database(engine, sessionmaker(engine, expire_on_commit=False))
    try:
        db.send_alone(update(OutboxMessage).where((literal(1) / literal(0)) == 1).values(attempts=1))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 41 + 1")).scalar() == 42
            assert connection.connection.dbapi_connection.orch_unread == []  # type: ignore[union-attr]
        assert any("sent unanswered failed" in r.getMessage() for r in caplog.records), caplog.text
    finally:
        engine.dispose()


def test_a_mark_sent_unanswered_commits_though_its_connection_closes_at_once(database_url: str) -> None:
    """pg8000's Parse and Bind each asked the server to Flush: writing their answers to a connection the
    client had closed a moment before, the server gave up before running the statement."""
    from sqlalchemy import insert, select, update
    from sqlalchemy.orm import sessionmaker

    from functions.api.db import Database, make_engine
    from functions.api.models import OutboxMessage, utcnow

    engine = make_engine(database_url)
    db = Database(engine, sessionmaker(engine, expire_on_commit=False))
    try:
        for attempt in range(5):
            with db.session() as session:
                row_id = session.execute(
                    insert(OutboxMessage)
                    .values(queue="q", body="{}", created_at=utcnow())
                    .returning(OutboxMessage.id)
                ).scalar_one()
            engine.dispose()  # a connection of its own for the mark, closed right after it
            db.send_alone(update(OutboxMessage).where(OutboxMessage.id == row_id).values(sent_at=utcnow()))
            engine.dispose()
            for _ in range(50):  # the server may still be running it
                with engine.connect() as connection:
                    sent = connection.execute(
                        select(OutboxMessage.sent_at).where(OutboxMessage.id == row_id)
                    ).scalar()
                if sent is not None:
                    break
                time.sleep(0.02)
            assert sent is not None, f"attempt {attempt}: the mark was lost with its connection"
    finally:
        engine.dispose()
