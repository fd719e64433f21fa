"""Engines and sessions, made once per container (Lambda) or process (embedded).

SQLite: WAL, foreign keys, and `BEGIN IMMEDIATE` so concurrent writers queue instead of
failing. PostgreSQL: pg8000 with one round trip per statement (`pg_wire`), small pool, a liveness check
of connections idle 0.5 s or more (`ping_only_after_idle`); TLS verified against the RDS CAs in AWS
(`ORCH_DATABASE_TLS=verify-full`, see `DatabaseTls`). How a connection logs in (`Credentials`):
- the API: IAM database authentication (`IamTokenCredentials`), a token signed locally with the function's
  role, no call to any AWS service;
- the deploy hook: the master user's RDS-managed secret (`RdsCredentials`, `ORCH_DATABASE_SECRET_REF`).
A paused Aurora Serverless v2 writer resumes on the first connection (~15 s): `WakeBudget` keeps trying
within the API's timeout, then gives up with `DatabaseWaking` (503 + Retry-After).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from sqlalchemy import (
    CursorResult,
    Delete,
    Engine,
    Integer,
    Update,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    inspect,
    null,
    text,
    true,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Executable

from functions.api.errors import DatabaseWaking
from functions.api.migrations import HEAD_REVISION
from shared.retry import once_more


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any exception."""
        with self.sessions.begin() as session:
            yield session

    def run_alone(self, statement: Update | Delete, params: Mapping[str, Any] | None = None) -> int:
        """One write that is atomic on its own (an UPDATE of rows already known), outside any transaction:
        on pg8000 in autocommit, so PostgreSQL commits it as it runs (one round trip where a transaction of
        its own takes two: the statement with its BEGIN, then COMMIT); elsewhere in a transaction of its
        own, on a Core connection (an ORM session around one UPDATE cost a third of marking an outbox row
        sent on SQLite). Returns how many rows it changed."""
        return self._alone(statement, params, wait=True)

    def send_alone(self, statement: Update | Delete, params: Mapping[str, Any] | None = None) -> None:
        """`run_alone` for a write whose loss only repeats work (marking outbox rows sent: lost, they are
        published again once their lease has run out, at least once as ever). On PostgreSQL the caller
        waits for neither the disk nor the answer: `synchronous_commit` is off for this one transaction
        (set by the statement itself, in its WHERE), and the answer is read in front of the connection's
        next statement (`pg_wire.answer_later`; a failure is logged there). A second commit per request
        waited on the WAL's flush (0.32 -> 0.18 ms here, more on Aurora, where a commit is a quorum write)
        and then on the answer. SQLite's commits are not flushed one by one anyway. A statement built once
        with bind parameters (`params` at each call) is also compiled and keyed once, not per call."""
        if self.engine.dialect.driver == "pg8000":
            statement = _not_flushed(statement)
        self._alone(statement, params, wait=False)

    def _alone(self, statement: Update | Delete, params: Mapping[str, Any] | None, wait: bool) -> int:
        if self.engine.dialect.driver != "pg8000":
            with self.engine.begin() as connection:  # SQLite: `BEGIN IMMEDIATE` (the engine's begin hook)
                return cast("CursorResult[Any]", connection.execute(statement, params)).rowcount
        with self.engine.connect() as connection:
            raw: Any = connection.connection.dbapi_connection
            raw.autocommit = True
            try:
                if not wait:
                    from functions.api.pg_wire import answer_later

                    answer_later(raw)
                changed = cast("CursorResult[Any]", connection.execute(statement, params)).rowcount
            finally:
                raw.autocommit = False
                raw.orch_answer_later = False  # not left for a statement it was not meant for
            # leaving rolls back: pg8000 sends nothing with no transaction open
            return changed

    def schema_revision(self) -> str | None:
        with self.engine.connect() as conn:
            try:
                row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
            except Exception:  # no table yet: nothing migrated
                return None
        return row[0] if row else None

    def schema_is_current(self) -> bool:
        return self.schema_revision() == HEAD_REVISION


@functools.lru_cache(maxsize=64)
def _not_flushed(statement: Update | Delete) -> Update | Delete:
    """`statement` committing without waiting for the WAL's flush: `synchronous_commit` off in its WHERE
    (`true`: local to the statement's own transaction). Kept per statement object, so one built once (with
    bind parameters) stays one object, whose cache key SQLAlchemy works out once."""
    return statement.where(func.set_config("synchronous_commit", "off", true()).is_not(None))


def added(session: Session, row: object) -> bool:
    """Add and flush `row` in a savepoint: False when a unique constraint refused it (a concurrent writer
    took the key; the savepoint is rolled back and the session stays usable)."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return False
    return True


def insert_together(session: Session, first: Any, second: Any) -> None:
    """INSERT two new ORM objects in one statement on PostgreSQL, `WITH first AS (INSERT ...) INSERT second
    ... RETURNING` its generated key (two flushed INSERTs waited twice, and the ORM's unit of work cost more
    than both statements); elsewhere (SQLite has no INSERT in a WITH) one flush of both. Either way both are
    left as a flush leaves them: persistent in `session`, new in its innermost transaction (a rollback of it,
    or of a savepoint around this, makes them transient again), with every column loaded. A column neither
    set nor given a Python default is NULL, so a mapped column with a server default must be set, and so
    must `first`'s key (only `second`'s is read back). Constraints are checked at the end of the statement:
    `second` may refer to `first`. What the ORM's flush events see (`work_marks`) sees neither row: the
    caller marks them."""
    if session.get_bind().dialect.name != "postgresql":
        session.add_all([first, second])
        session.flush()
        return
    first_values, second_values = _insert_values(first), _insert_values(second)
    if any(value is _GENERATED for value in first_values.values()):
        raise ValueError("insert_together: set the first object's key (only the second's is read back)")
    first_table, second_table = _table_of(first), _table_of(second)
    statement = _together(first_table, _shape(first_values), second_table, _shape(second_values))
    parameters = _parameters("a_", first_values) | _parameters("b_", second_values)
    generated = [column for column, value in second_values.items() if value is _GENERATED]
    result = session.execute(statement, parameters)
    second_values.update(zip(generated, result.one() if generated else (), strict=True))
    for instance, values in ((first, first_values), (second, second_values)):
        mapper = inspect(instance).mapper
        for column, value in values.items():
            setattr(instance, mapper.get_property_by_column(column).key, None if value is _NULL else value)
    with session.no_autoflush:  # pending for no longer than the next line: never flushed (inserted again)
        session.add_all([first, second])
        # what a flush does once it has inserted them (SQLAlchemy's own step, pinned by the tests)
        session._register_persistent({inspect(first), inspect(second)})


_GENERATED = object()
"""`_insert_values`: the database makes this column's value (an autoincrement key), read back."""
_NULL = object()
"""`_insert_values`: a column left unset, written as SQL NULL (None given to a JSON column is JSON null)."""


def _shape(values: dict[Any, Any]) -> tuple[tuple[str, str], ...]:
    """What a statement for these values looks like: per column, a parameter, NULL, or generated."""
    return tuple(
        (column.key, "null" if value is _NULL else "generated" if value is _GENERATED else "bound")
        for column, value in values.items()
    )


def _parameters(prefix: str, values: dict[Any, Any]) -> dict[str, Any]:
    return {
        prefix + column.key: value
        for column, value in values.items()
        if value is not _NULL and value is not _GENERATED
    }


@functools.lru_cache(maxsize=32)
def _together(
    first_table: Any,
    first: tuple[tuple[str, str], ...],
    second_table: Any,
    second: tuple[tuple[str, str], ...],
) -> Any:
    """One statement per shape, its values bound by name (`a_` first, `b_` second): built and compiled once
    (a statement built with its values each time cost more in SQLAlchemy's cache key than it saved)."""

    def values(table: Any, prefix: str, shape: tuple[tuple[str, str], ...]) -> dict[Any, Any]:
        return {
            table.c[key]: null() if how == "null" else bindparam(prefix + key, type_=table.c[key].type)
            for key, how in shape
            if how != "generated"
        }

    statement = (
        insert(second_table)
        .values(values(second_table, "b_", second))
        .add_cte(insert(first_table).values(values(first_table, "a_", first)).cte("first_row"))
    )
    generated = [second_table.c[key] for key, how in second if how == "generated"]
    return statement.returning(*generated) if generated else statement


def _table_of(instance: Any) -> Any:
    return inspect(instance).mapper.local_table


def _insert_values(instance: Any) -> dict[Any, Any]:
    """Every column of a new object's INSERT: what was set, else its Python default, else NULL (or
    `_GENERATED` for an autoincrement key), as the ORM's flush would write it."""
    state = inspect(instance)
    values: dict[Any, Any] = {}
    for prop in state.mapper.column_attrs:
        column = prop.columns[0]
        if prop.key in state.dict:
            values[column] = state.dict[prop.key]
        elif column.default is not None and column.default.is_scalar:
            values[column] = column.default.arg
        elif column.default is not None and column.default.is_callable:
            values[column] = column.default.arg(None)
        elif (
            column.primary_key
            and column.autoincrement in (True, "auto")
            and column.type._type_affinity is Integer
        ):
            values[column] = _GENERATED
        elif column.server_default is not None:
            raise ValueError(f"insert_together: set {prop.key} (its server default would not be read back)")
        else:
            values[column] = _NULL
    return values


def rows_changed(session: Session, statement: Executable, params: Mapping[str, Any] | None = None) -> int:
    """Run an UPDATE / DELETE and say how many rows it touched: a compare-and-set won when this is 1."""
    return cast("CursorResult[Any]", session.execute(statement, params)).rowcount


MIGRATION_SCRIPTS = Path(__file__).parent / "migrations" / "versions"


def known_revisions() -> frozenset[str]:
    """The revisions this code's migrations define (a script's file name is its revision id, a test checks
    it), read without importing Alembic: the cold-start schema check stays cheap."""
    return frozenset(path.stem for path in MIGRATION_SCRIPTS.glob("[0-9]*.py"))


def schema_serves(revision: str | None) -> bool:
    """Whether this code can serve a database at `revision`: at its head, or ahead of it.

    Ahead = a revision this code does not know: newer code migrated it, and this (older) code came back
    with a rollback. It serves, because the migrations only expand the schema (new tables, new nullable or
    defaulted columns; nothing renamed, dropped or tightened while a release that uses it may still run),
    so every statement of the previous release still works. A database behind the head does not serve:
    this code would query tables and columns it lacks.
    """
    return revision == HEAD_REVISION or (revision is not None and revision not in known_revisions())


AUTH_FAILURES = frozenset({"28000", "28P01"})
"""PostgreSQL SQLSTATEs for a refused login: invalid authorization / invalid password."""


class Credentials(Protocol):
    """What a new connection logs in with ({"username", "password"}), and a fresh copy when it was refused."""

    def get(self) -> dict[str, Any]: ...

    def refresh(self) -> dict[str, Any]: ...


class _Cached:
    """A value made by `make`, kept `ttl_s` seconds; `refresh` forgets it. Thread-safe."""

    def __init__(self, make: Callable[[], dict[str, Any]], ttl_s: float, clock: Callable[[], float]) -> None:
        self._make = make
        self._ttl_s = ttl_s
        self._clock = clock
        self._value: dict[str, Any] | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def get(self) -> dict[str, Any]:
        with self._lock:
            if self._value is None or self._clock() - self._at > self._ttl_s:
                self._value, self._at = self._make(), self._clock()
            return self._value

    def refresh(self) -> dict[str, Any]:
        with self._lock:
            self._value = None
        return self.get()


class RdsCredentials(_Cached):
    """A Secrets Manager secret with {username, password}, cached; read again when the database refuses it.

    RDS rotates the master password (every 7 days, RDS-managed). A warm container would keep the old one;
    every new connection takes the cached value and, if PostgreSQL refuses it, re-reads the secret once.
    """

    def __init__(
        self, fetch: Callable[[], str], ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(lambda: cast("dict[str, Any]", json.loads(fetch())), ttl_s, clock)


IAM_TOKEN_LIFETIME_S = 900.0
"""RDS accepts an IAM authentication token for 15 minutes after it was signed (only at login)."""
IAM_TOKEN_REUSE_S = 600.0
"""How long one token is reused: well inside its lifetime, so no login ever presents an expired one."""


class IamTokenCredentials(_Cached):
    """IAM database authentication: `user` and a token signed with the caller's AWS credentials.

    `sign` is `rds.generate_db_auth_token` (a local SigV4 presign: no request leaves the process); the
    role needs `rds-db:connect` on `dbuser:<resource id>/<user>`. A refused login signs a new token once
    (the role's credentials may have been renewed).
    """

    def __init__(
        self,
        user: str,
        sign: Callable[[], str],
        reuse_s: float = IAM_TOKEN_REUSE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if reuse_s >= IAM_TOKEN_LIFETIME_S:
            raise ValueError(f"an IAM token lives {IAM_TOKEN_LIFETIME_S:.0f} s; reuse it for less")
        super().__init__(lambda: {"username": user, "password": sign()}, reuse_s, clock)


def rds_token_signer(host: str, port: int, user: str, region: str | None) -> Callable[[], str]:
    """`generate_db_auth_token` for one login, with the default credential chain (the function's role)."""

    def sign() -> str:
        import boto3

        client = boto3.session.Session(region_name=region).client("rds")
        return str(client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user))

    return sign


def is_auth_failure(exc: BaseException) -> bool:
    for candidate in (exc, getattr(exc, "orig", None), exc.__cause__):
        details = getattr(candidate, "args", None)
        if details and isinstance(details[0], dict) and details[0].get("C") in AUTH_FAILURES:
            return True
    return False


def is_unreachable(exc: BaseException) -> bool:
    """The server did not answer the connection (refused, reset, timed out): a paused or resuming Aurora
    writer, a database still starting. An answer from PostgreSQL (wrong password, no such database) is not."""
    if is_auth_failure(exc):
        return False
    for candidate in (exc, exc.__cause__, exc.__context__):
        if isinstance(candidate, (OSError, TimeoutError)):
            return True
        if type(candidate).__name__ == "InterfaceError":  # pg8000: "Can't create a connection to host ..."
            return True
    return False


@dataclass(frozen=True)
class WakeBudget:
    """How long a new connection keeps trying a database that does not answer (a paused Aurora writer
    resumes on the first connection attempt, in ~15 s), and what the caller is told past it."""

    seconds: float
    retry_after_s: int = 10
    pause_s: float = 1.0
    release_idle_s: int | None = None
    """The server closes a connection idle this long (`idle_session_timeout`): a warm container's pool must
    not keep the database awake (Aurora pauses only with no connection open); the pool's pre-ping reconnects."""


def connect_waking(
    connect: Callable[[float | None], Any],
    budget: WakeBudget | None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """`connect(timeout)` until it succeeds, an error other than "unreachable" happens, or `budget` is spent;
    then `DatabaseWaking`. Without a budget: one attempt, no timeout (the driver's own)."""
    if budget is None:
        return connect(None)
    deadline = clock() + budget.seconds
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - clock()
        try:
            return connect(max(remaining, 0.1))
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            if deadline - clock() <= budget.pause_s:
                raise DatabaseWaking(
                    f"the database is waking up (no answer after {attempt} attempts in {budget.seconds:.0f} s); "
                    f"retry in {budget.retry_after_s} s",
                    retry_after_s=budget.retry_after_s,
                ) from exc
            sleep(budget.pause_s)


def attach_credentials(
    engine: Engine, credentials: Credentials | None, wake: WakeBudget | None = None
) -> None:
    """Every new connection logs in with the current credentials (a refused login gets fresh ones, once) and,
    with a `wake` budget, waits out a database that is resuming."""

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        def attempt(timeout: float | None) -> Any:
            params = dict(cparams)
            if timeout is not None:
                # pg8000's socket timeout, for this login and the connection's statements: within the budget
                params["timeout"] = timeout
            if credentials is None:
                return dialect.connect(*cargs, **params)

            def login() -> Any:
                data = credentials.get()
                return dialect.connect(
                    *cargs, **{**params, "user": data["username"], "password": data["password"]}
                )

            return once_more(is_auth_failure, before_retry=lambda _exc: credentials.refresh())(login)

        connection = connect_waking(attempt, wake)
        if wake is not None and wake.release_idle_s:
            release_when_idle(connection, wake.release_idle_s)
        return connection


def release_when_idle(connection: Any, seconds: int) -> None:
    """`idle_session_timeout` for this session (PostgreSQL 14+), committed so it outlives the transaction."""
    cursor = connection.cursor()
    try:
        cursor.execute(f"SET idle_session_timeout = {int(seconds) * 1000}")
    finally:
        cursor.close()
    connection.commit()


def url_from_rds_secret(
    secret_json: str,
    driver: str = "postgresql+pg8000",
    *,
    host: str | None = None,
    port: int | None = None,
    database: str | None = None,
) -> str:
    """An RDS secret as a SQLAlchemy URL: the RDS-generated kind carries {username, password, host, port,
    dbname}, the RDS-managed one only {username, password}; the keyword arguments fill in what it lacks."""
    data = json.loads(secret_json)
    return URL.create(
        driver,
        username=data["username"],
        password=data["password"],
        host=data.get("host") or host,
        port=int(data.get("port") or port or 5432),
        database=data.get("dbname") or database or "postgres",
    ).render_as_string(hide_password=False)


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


RDS_CA_BUNDLE = Path(__file__).with_name("rds-global-bundle.pem")
"""The Amazon RDS root CAs (source and date in its header): verify-full's default bundle."""
TlsMode = Literal["verify-full", "require", "disable"]


class DatabaseTlsError(RuntimeError):
    """The TLS settings cannot be honoured (a missing or unreadable CA bundle): refused at startup."""


@dataclass(frozen=True)
class DatabaseTls:
    """How a PostgreSQL connection negotiates TLS (pg8000's `ssl_context` connect argument).

    - `verify-full`: TLS required, the server's certificate checked against `ca_bundle` (default: the
      RDS root CAs shipped beside this module) and its name against the host connected to.
    - `require`: TLS required, the certificate not checked (encrypted, the server not authenticated).
    - `disable`: no TLS.
    - unset (`mode=None`): pg8000's own default, TLS if the server offers it, unverified (CERT_NONE),
      plaintext if it does not; but none to a loopback host (the embedded / local case), where TLS
      protects nothing and pg8000 built a context and loaded the system's CAs for every new connection
      (~20 ms of CPU each, against ~2 ms for the whole login without TLS). A loopback server that
      insists on TLS (`hostssl`) needs `require`.
    """

    mode: TlsMode | None = None
    ca_bundle: Path | None = None

    def connect_args(self, host: str | None) -> dict[str, Any]:
        """pg8000's TLS connect argument for a connection to `host` (None: pg8000's default, localhost).
        Required: a caller that forgot it would reach a remote server without TLS."""
        if self.mode is None:
            return {"ssl_context": False} if _is_loopback(host) else {}
        if self.mode == "disable":
            return {"ssl_context": False}
        if self.mode == "require":
            return {"ssl_context": True}  # pg8000: TLS or refuse, CERT_NONE
        return {"ssl_context": self.verifying_context()}

    def verifying_context(self) -> ssl.SSLContext:
        bundle = self.ca_bundle or RDS_CA_BUNDLE
        if not bundle.is_file():
            raise DatabaseTlsError(
                f"ORCH_DATABASE_TLS=verify-full needs a CA bundle: {bundle} does not exist "
                "(set ORCH_DATABASE_CA_BUNDLE to a PEM file of the CAs that sign the database's certificate)"
            )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts only the bundle, not the system's CAs
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_verify_locations(cafile=str(bundle))
        except (ssl.SSLError, OSError) as exc:
            raise DatabaseTlsError(f"the CA bundle {bundle} is not a readable PEM file: {exc}") from exc
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True
        return context


def _is_loopback(host: str | None) -> bool:
    if host is None or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


PG_TIMESTAMP_OID, PG_TIMESTAMPTZ_OID = 1114, 1184


def _fast_timestamp(fallback: Callable[[str], Any]) -> Callable[[str], Any]:
    """A pg8000 text-format reader for `timestamp` / `timestamptz` built on `datetime.fromisoformat` (C):
    ~30x faster than pg8000's `strptime` (1.5 vs 58 µs a value), which took a fifth of a 300-row listing.
    PostgreSQL's ISO output (`2024-01-02 03:04:05.123456+05:30`, also a pre-1900 local-mean-time offset with
    seconds, which pg8000 returns as text) is what `fromisoformat` reads; anything else (`infinity`, a BC
    date, a year past 9999) goes to pg8000's own reader, so those come back exactly as pg8000 returns them."""

    def read(data: str) -> Any:
        try:
            return datetime.fromisoformat(data)
        except ValueError:
            return fallback(data)

    return read


def register_fast_timestamps(engine: Engine) -> None:
    """Every connection the engine opens reads timestamps with `_fast_timestamp`."""
    from pg8000 import converters

    timestamp, timestamptz = (
        _fast_timestamp(converters.timestamp_in),
        _fast_timestamp(converters.timestamptz_in),
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.register_in_adapter(PG_TIMESTAMP_OID, timestamp)
        dbapi_connection.register_in_adapter(PG_TIMESTAMPTZ_OID, timestamptz)


PING_AFTER_IDLE_S = 0.5
"""A pooled connection back in the pool for less than this is not pinged again at checkout: half the
shortest `database_idle_session_s` (1 s), after which the server closes an idle connection."""


def ping_only_after_idle(
    engine: Engine, idle_s: float = PING_AFTER_IDLE_S, clock: Callable[[], float] = time.monotonic
) -> None:
    """The pool's liveness check (`pool_pre_ping`: a round trip) only for a connection that sat in the pool
    `idle_s` or longer: one used a moment ago (the request before, or this request's first transaction
    when the outbox marks its rows sent) is alive but for a server restart or failover within that moment,
    and a statement on a connection that dropped anyway is answered 503 `unavailable` (the handler), the
    pool reconnecting for the next request."""
    ping = engine.dialect.do_ping

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection is not None:
            dbapi_connection.orch_checked_in_at = clock()

    def do_ping(dbapi_connection: Any) -> bool:
        checked_in_at = getattr(dbapi_connection, "orch_checked_in_at", None)
        if checked_in_at is not None and clock() - checked_in_at < idle_s:
            return True
        return ping(dbapi_connection)

    engine.dialect.do_ping = do_ping  # type: ignore[method-assign]


POOL_KEPT = 8
"""PostgreSQL connections the pool keeps open between uses. The pool opens one only when every kept one is
in use, so a Lambda container, which serves one request at a time, still holds one or two. The embedded
stack serves `ORCH_API_CONCURRENCY` requests at once (4 by default) beside its consumers: with 2 kept, a
connection past the second was closed as it came back and opened again by the next request (31 new
connections in 400 listings by 4 threads, each a TCP and TLS-probing start-up, and its prepared statements
lost: +50 % CPU per listing)."""
POOL_OVERFLOW = 8
"""Connections opened past `POOL_KEPT` at a busy moment, closed as they come back; a request past both
waits for one."""


def make_engine(
    database_url: str, tls: DatabaseTls | None = None, prepared_statements: int | None = None
) -> Engine:
    """`prepared_statements`: kept per PostgreSQL connection (`pg_wire`; None: its default, 0: none)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    pg8000 = url.get_driver_name() == "pg8000"
    connect_args = (tls or DatabaseTls()).connect_args(url.host) if pg8000 else {}
    if url.get_backend_name() == "postgresql":
        engine = create_engine(
            url,
            pool_size=POOL_KEPT,
            max_overflow=POOL_OVERFLOW,
            pool_pre_ping=True,
            pool_recycle=300,
            connect_args=connect_args,
        )
        ping_only_after_idle(engine)
        if pg8000:
            register_fast_timestamps(engine)
            from functions.api.pg_wire import pipeline_statements, remember_converted_statements

            remember_converted_statements()
            event.listen(
                engine,
                "connect",
                lambda connection, _record: pipeline_statements(connection, prepared_statements),
            )
        return engine
    return create_engine(url, pool_pre_ping=True)


_databases: dict[str, Database] = {}
_lock = threading.Lock()


def get_database(
    database_url: str,
    credentials: Credentials | None = None,
    tls: DatabaseTls | None = None,
    wake: WakeBudget | None = None,
    prepared_statements: int | None = None,
) -> Database:
    """Cached per URL: created once per container."""
    with _lock:
        db = _databases.get(database_url)
        if db is None:
            engine = make_engine(database_url, tls, prepared_statements)
            if credentials is not None or wake is not None:
                attach_credentials(engine, credentials, wake)
            db = Database(engine, sessionmaker(engine, expire_on_commit=False))
            _databases[database_url] = db
        return db


def dispose_all() -> None:
    with _lock:
        for db in _databases.values():
            db.engine.dispose()
        _databases.clear()
