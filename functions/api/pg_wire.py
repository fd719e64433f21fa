"""pg8000 with one round trip per statement, and none for BEGIN.

pg8000 runs a statement with parameters as three exchanges with the server: Parse (wait), Describe (wait),
Bind + Execute (wait); `commit` goes the same way, and every transaction opens with a `begin transaction`
of its own. A request of two queries and a commit waited on the network eleven times (issue 24:
`recv_into` + `send` were over half of "create an engineering task"). The extended protocol lets a client
send Parse, Bind, Describe (of the portal), Execute and Sync at once and read the answers after, which is
what asyncpg does and what `_execute_unnamed` does here; the BEGIN a cursor asks for is held back and sent
in front of the next statement (an empty transaction's commit or rollback then sends nothing). The
messages and their decoding are pg8000's own, but for the Flush pg8000 sends after each Parse and Bind (the
Sync at the end flushes the server's answers at once); only the order of sending and waiting changes. An error in
any step makes the server skip to Sync and answer with the error, which pg8000 raises as before, after
every answer already asked for has been read (the connection stays in step).

Before any of that, pg8000 rewrites each statement's `%s` placeholders into `$1, $2, ...` with a
character-by-character scan in Python (`convert_paramstyle`: 18 % of a `GET /projects/{id}` on the server);
SQLAlchemy sends the same few statement texts again and again, so `remember_converted_statements` keeps
the rewritten text of the last `CONVERTED_STATEMENTS` texts (the values are passed through as before).

Reads come before the transaction (`plain_read`): at READ COMMITTED, PostgreSQL's default and the only level
this API runs at, every statement takes its own snapshot, in a transaction or not, so a plain SELECT (no
locking clause, nothing with a side effect) answers the same outside the transaction as inside it. The held
BEGIN therefore waits for the first statement that is not one, and a request that only reads (a `GET`)
never opens a transaction: no BEGIN, no COMMIT, one round trip per statement. A session whose isolation is
anything else (checked when the connection opens, and followed through `SET ... ISOLATION LEVEL`) sends its
BEGIN before its first statement, as before.

Each statement text is prepared once per connection, as a named statement: its first execution sends
Parse, Bind, Describe, Execute and Sync as above, the next ones only Bind, Execute and Sync, with the
columns the first one described. The server skips parsing and planning, and this side reading the row
description (asyncpg keeps such a cache too). `PREPARED_STATEMENTS` are kept by default, the least recently
used closed; `ORCH_DATABASE_PREPARED_STATEMENTS=0` turns it off for a pooler in transaction mode, which
would hand a session's statements to another server connection. A commit or rollback is never prepared.
When the server no longer takes a prepared statement (`GONE_STATEMENT`: dropped; `STALE_PLAN`: a table
under it changed shape in a migration), the connection forgets all of them; a statement that failed so outside
a transaction (a read before it) runs again at once, prepared anew, and one inside closes the connection
(to SQLAlchemy a disconnect: the pool replaces it, the request is answered 503 with Retry-After). A
statement that fails for any other reason is parsed again on its next use (what failed may have been its
plan: a parameter type a migration changed), and a parameter the connection's encoding cannot carry is
refused before anything is sent. There is no RDS Proxy in front of the database
(docs/decisions.md), which would pin a session holding prepared statements.

`pipeline_statements` installs the pipelining on one connection; with a pg8000 whose internals are not the
ones this was written against (checked once), connections keep pg8000's own way and `PIPELINED` says so.
"""

from __future__ import annotations

import collections
import functools
import itertools
import re
import types
from collections.abc import Callable
from typing import Any

PREPARED_STATEMENTS = 256
"""Named statements a connection keeps prepared on the server by default (`ORCH_DATABASE_PREPARED_STATEMENTS`
sets it), the most recently used (the API sends ~100 distinct texts); the least recently used past that
are closed. 0: none (every statement unnamed), for a pooler that moves a session between connections."""
GONE_STATEMENT = "26000"
"""invalid_sql_statement_name: "prepared statement ... does not exist"."""
STALE_PLAN = ("0A000", "RevalidateCachedQuery")
"""feature_not_supported from the routine that says "cached plan must not change result type"."""
BEGIN = "begin transaction"
"""What pg8000's cursor sends before a statement outside a transaction."""
ENDS = frozenset({"commit", "rollback"})
CONVERTED_STATEMENTS = 1024
POSITIONAL_STYLES = frozenset({"format", "numeric", "qmark"})
"""Paramstyles whose values pg8000 passes on as given: only the statement's text is rewritten."""
READ_COMMITTED = "read committed"
_LOCKING = re.compile(r"\bFOR\s+(NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE|SHARE)\b", re.IGNORECASE)
_SIDE_EFFECTS = re.compile(
    r"\bINTO\b|pg_advisory|set_config|nextval|setval|txid_current|pg_current_xact_id|\blo_", re.IGNORECASE
)
_ISOLATION = re.compile(
    r"^\s*SET\b.*?\b(?:ISOLATION\s+LEVEL\s+|(?:default_)?transaction_isolation\s*(?:=|\bTO\b)\s*)"
    r"'?([A-Z ]+?)'?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)


@functools.lru_cache(maxsize=CONVERTED_STATEMENTS)
def plain_read(statement: str) -> bool:
    """A SELECT that locks nothing and changes nothing (conservative: a locking clause or a function with a
    side effect anywhere in its text, even in a literal, makes it not one), or an empty statement (the
    liveness check of SQLAlchemy's pg8000 dialect sends `;`)."""
    if not statement.strip().strip(";").strip():
        return True
    return (
        statement.lstrip()[:6].upper() == "SELECT"
        and _LOCKING.search(statement) is None
        and _SIDE_EFFECTS.search(statement) is None
    )


try:
    from pg8000 import core as _core

    _NEEDED: tuple[str, ...] = ("NULL_BYTE", "DESCRIBE", "PORTAL", "EXECUTE_MSG", "SYNC_MSG", "Context")
    _NEEDED += ("make_params", "_write", "_flush", "InterfaceError", "DatabaseError", "CLOSE", "STATEMENT")
    _NEEDED += ("PARSE", "BIND", "H_pack", "i_pack", "i_unpack", "ci_unpack", "_read", "DATA_ROW")
    _NEEDED += ("READY_FOR_QUERY",)
    _METHODS = ("send_QUERY", "_send_message", "handle_messages", "execute_simple")
    PIPELINED = all(hasattr(_core, name) for name in _NEEDED) and all(
        hasattr(_core.CoreConnection, name) for name in _METHODS
    )
    from pg8000.converters import string_in as _as_read  # a text column's reader: the text as it is
except ImportError:  # pragma: no cover - pg8000 is a base dependency
    PIPELINED = False


def _execute_simple(self: Any, statement: str) -> Any:
    """pg8000's `execute_simple` (a statement without parameters), with a held-back BEGIN in front."""
    if statement == BEGIN:
        self.orch_begin_pending = True
        return _core.Context(statement)
    _follow_isolation(self, statement)
    contexts = _pending_begin(self, statement)
    contexts.append(_core.Context(statement))
    _send(self, lambda: self.send_QUERY(statement))
    return _answers(self, contexts)


def _execute_unnamed(self: Any, statement: str, vals: Any = (), oids: Any = (), stream: Any = None) -> Any:
    """pg8000's `execute_unnamed`, with every message sent before the first answer is read."""
    if statement in ENDS and self.orch_begin_pending:
        self.orch_begin_pending = False  # the transaction never started: nothing to end
        return _core.Context(statement)
    if stream is not None:
        return _streamed(self, statement, vals, oids, stream)
    params = _core.make_params(self.py_types, vals)  # before anything is written: a bad value sends nothing
    for value in params:  # nor one the connection's encoding cannot carry (a lone surrogate): send_BIND
        if value is not None and not value.isascii():  # would fail half-way, and what it had written would
            value.encode(self._client_encoding)  # go out with the next statement (ASCII always encodes)
    _follow_isolation(self, statement)
    contexts = _pending_begin(self, statement)
    if self.orch_answer_later:
        return _send_unanswered(self, statement, oids, params, contexts)
    key = (statement, tuple(oids or ()))
    known = self.orch_prepared.get(key)
    if known is None:  # a commit or a rollback is never prepared: it must not fail for want of its statement
        name = _core.NULL_BYTE if statement in ENDS or self.orch_prepared_limit <= 0 else _new_name(self)
        contexts.append(_core.Context(statement))
    else:
        self.orch_prepared.move_to_end(key)
        name = known[0]
        contexts.append(_core.Context(statement, columns=known[1], input_funcs=known[2]))
    closing, self.orch_closing = self.orch_closing, []
    _send(self, functools.partial(_messages, self, closing, name, statement, oids, params, known is None))
    try:
        answered = _answers(self, contexts)
    except _core.DatabaseError as exc:
        if not _forget(self, key, name, known is not None, exc):
            raise
        if not getattr(self, "_in_transaction", True):
            return _execute_unnamed(self, statement, vals, oids)  # it ran on its own (before any transaction)
        # a disconnect to SQLAlchemy: the pool closes and replaces this connection, the API answers 503 with
        # Retry-After (what the transaction did is rolled back with it)
        raise _core.InterfaceError(
            "connection is closed: the server dropped this connection's prepared statements in a transaction"
        ) from exc
    if known is None and name != _core.NULL_BYTE:
        self.orch_prepared[key] = (name, answered.columns, answered.input_funcs)
        while len(self.orch_prepared) > self.orch_prepared_limit:
            self.orch_closing.append(self.orch_prepared.popitem(last=False)[1][0])
    return answered


def _streamed(self: Any, statement: str, vals: Any, oids: Any, stream: Any) -> Any:
    """COPY streams data back and forth: pg8000's own exchange, after any BEGIN held and the answers of
    statements sent unanswered (they come first)."""
    begin = _pending_begin(self)
    if begin:
        _send(self, lambda: None)
    _answers(self, begin)
    return type(self).execute_unnamed(self, statement, vals=vals, oids=oids, stream=stream)


def _send_unanswered(self: Any, statement: str, oids: Any, params: Any, begin: list[Any]) -> Any:
    """`answer_later`: the statement is sent (unnamed: it keeps no prepared statement, whose columns only its
    answer would tell) and its answer left to be read in front of the connection's next one."""
    self.orch_answer_later = False
    if begin or not self.autocommit:
        raise _core.InterfaceError("answer_later is for a statement that commits on its own (autocommit)")
    closing, self.orch_closing = self.orch_closing, []
    _send(self, functools.partial(_messages, self, closing, _core.NULL_BYTE, statement, oids, params, True))
    context = _core.Context(statement)
    self.orch_unread.append(context)
    return context


def answer_later(connection: Any) -> bool:
    """The next statement on this pg8000 connection, which must commit on its own (autocommit), is sent
    without waiting for its answer: that is read, and a failure in it logged, before the answer of the
    connection's next statement, in the same wait. For a write whose loss only repeats work (an outbox row
    marked sent is published again once its lease runs out): the request does not wait on it. False (and
    nothing changes) on a connection without the pipelining."""
    if not hasattr(connection, "orch_unread"):
        return False
    connection.orch_answer_later = True
    return True


def _messages(
    self: Any, closing: list[bytes], name: bytes, statement: str, oids: Any, params: Any, parse: bool
) -> None:
    """One statement's messages: the closes of statements let go (nothing waits on them: their
    CloseComplete comes with this answer), Parse and Describe only when `parse`, then Bind, Execute, Sync."""
    for stale in closing:
        self._send_message(_core.CLOSE, _core.STATEMENT + stale)
    if parse:
        self._send_message(_core.PARSE, _parse_body(self, name, statement, oids))
    self._send_message(_core.BIND, _bind_body(self, name, params))
    if parse:
        self._send_message(_core.DESCRIBE, _core.PORTAL + _core.NULL_BYTE)
    _core._write(self._sock, _core.EXECUTE_MSG)
    _core._write(self._sock, _core.SYNC_MSG)


def _parse_body(self: Any, name: bytes, statement: str, oids: Any) -> bytes:
    """A Parse message's body, as pg8000's `send_PARSE` writes it, which also asks the server to Flush: its
    ParseComplete and BindComplete then went out alone, ahead of the rest, and the server, writing them to a
    connection the client had just closed, gave up before running the statement (a write sent unanswered
    was lost with its connection). The Sync at the end flushes everything at once."""
    body = bytearray(name)
    body += statement.encode(self._client_encoding) + _core.NULL_BYTE
    body += _core.H_pack(len(oids))
    for oid in oids:
        body += _core.i_pack(0 if oid == -1 else oid)
    return bytes(body)


def _bind_body(self: Any, name: bytes, params: Any) -> bytes:
    """A Bind message's body (all parameters as text, results as text), as pg8000's `send_BIND` writes it,
    without its Flush (`_parse_body`)."""
    body = bytearray(_core.NULL_BYTE + name + _core.H_pack(0) + _core.H_pack(len(params)))
    for value in params:
        if value is None:
            body += _core.i_pack(-1)
        else:
            encoded = value.encode(self._client_encoding)
            body += _core.i_pack(len(encoded)) + encoded
    body += _core.H_pack(0)
    return bytes(body)


def _forget(
    self: Any, key: tuple[str, tuple[int, ...]], name: bytes, known: bool, exc: BaseException
) -> bool:
    """After a failed execution: the statement is not kept (parsed or not, closing one that is not there is
    no error; a kept one is parsed again next time, in case what failed was its plan: a parameter type a
    migration changed). When the server no longer takes a kept one, the connection forgets them all (what
    drops one, DEALLOCATE ALL or DISCARD ALL, drops every one) and True: prepare it again."""
    if known and _stale(exc):
        self.orch_closing.extend(entry[0] for entry in self.orch_prepared.values())
        self.orch_prepared.clear()
        return True
    if known:
        del self.orch_prepared[key]
    if name != _core.NULL_BYTE:
        self.orch_closing.append(name)
    return False


def _new_name(self: Any) -> bytes:
    return f"orch_{next(self.orch_names)}".encode("ascii") + b"\x00"


def _stale(exc: BaseException) -> bool:
    """The server no longer takes a prepared statement: it is gone (a `DISCARD`, `DEALLOCATE`), or a table it
    reads changed shape under it (a migration). A statement's own feature_not_supported (an interval's
    `dow`, say) is not that: the routine the error came from tells them apart (its text may be translated)."""
    detail = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return detail.get("C") == GONE_STATEMENT or (detail.get("C"), detail.get("R")) == STALE_PLAN


def _follow_isolation(self: Any, statement: str) -> None:
    """Reads go before the transaction only at READ COMMITTED: a `SET ... ISOLATION LEVEL` (or of
    `default_transaction_isolation`) switches it; any other SET naming isolation switches it off."""
    if statement.lstrip()[:3].upper() != "SET" or "isolation" not in statement.lower():
        return
    level = _ISOLATION.match(statement)
    self.orch_reads_first = level is not None and " ".join(level.group(1).lower().split()) == READ_COMMITTED


def _pending_begin(self: Any, statement: str | None = None) -> list[Any]:
    """The held-back BEGIN's context, its message written (not yet flushed), if one is held and `statement`
    needs it (a plain read at READ COMMITTED does not: the BEGIN waits for the next statement)."""
    if not self.orch_begin_pending:
        return []
    if statement is not None and self.orch_reads_first and plain_read(statement):
        return []
    self.orch_begin_pending = False
    if self.autocommit:  # switched to autocommit since: pg8000 would not have begun
        return []
    self.send_QUERY(BEGIN)
    return [_core.Context(BEGIN)]


def _send(self: Any, write: Callable[[], None]) -> None:
    """`write` the messages, then flush them to the server in one go."""
    try:
        write()
        _core._flush(self._sock)
    except AttributeError as exc:  # pg8000 sets _sock to None when the connection is closed
        if self._sock is not None:
            raise
        raise _core.InterfaceError("connection is closed") from exc


def _answers(self: Any, contexts: list[Any]) -> Any:
    """Reads the answer to each message sent, in order, even past an error; raises the first error. The
    answers of statements sent unanswered come first: read, their failures logged, not raised."""
    unread, self.orch_unread = self.orch_unread, []
    for context in unread:
        try:
            self.handle_messages(context)
        except (_core.InterfaceError, OSError):
            raise _core.InterfaceError("network error reading an earlier statement's answer") from None
        except Exception as exc:
            _unanswered_failed(context.statement, exc)
    first_error: BaseException | None = None
    for context in contexts:
        try:
            self.handle_messages(context)
        except _core.InterfaceError:
            raise  # the connection is gone: nothing more to read
        except OSError as exc:
            # pg8000 reads a message's first bytes outside its own `except OSError` (`core._read`): a reset
            # connection would escape as ConnectionResetError, which SQLAlchemy neither wraps nor takes for
            # a disconnect (a 500 instead of the handler's 503, the dead connection kept in the pool)
            raise _core.InterfaceError("network error") from exc
        except Exception as exc:
            first_error = first_error or exc
    if first_error is not None:
        raise first_error
    return contexts[-1] if contexts else None


def _handle_messages(self: Any, context: Any) -> None:
    """pg8000's `handle_messages` (read the server's messages up to ReadyForQuery, each to its handler), with
    each DataRow decoded here: one call and no copy fewer per message, the column readers looked up once per
    result, and a text column (pg8000's reader returns the text as it is) not passed through a call. pg8000's
    own loop was a third of a 300-project listing's CPU on PostgreSQL. The values are pg8000's: the same bytes
    decoded in the connection's encoding, then the same reader."""
    sock = self._sock
    if sock is None:
        raise _core.InterfaceError("connection is closed")
    read, handlers = sock.read, self.message_types
    data_row, ready = _core.DATA_ROW, _core.READY_FOR_QUERY
    ci_unpack, i_unpack = _core.ci_unpack, _core.i_unpack
    described: Any = None  # the column readers `readers` was made from (a RowDescription may change them)
    readers: tuple[Any, ...] = ()  # per column: its reader, None for text (taken as decoded)
    encoding = self._client_encoding
    code = None
    while code != ready:
        try:
            header = read(5)
            if len(header) != 5:
                header += _core._read(sock, 5 - len(header))
            code, length = ci_unpack(header)
            length -= 4
            data = read(length)
            if len(data) != length:
                data += _core._read(sock, length - len(data))
        except OSError as exc:  # as pg8000's `_read`: a reset or timed-out socket is a network error
            raise _core.InterfaceError("network error") from exc
        if code != data_row:
            handlers[code](data, context)
            continue
        if described is not context.input_funcs:
            described = context.input_funcs
            readers = tuple(None if f is _as_read else f for f in described)
            encoding = self._client_encoding
        row: list[Any] = []
        append = row.append
        at = 2
        for reader in readers:
            size = i_unpack(data, at)[0]
            at += 4
            if size == -1:
                append(None)
                continue
            end = at + size
            text = data[at:end].decode(encoding)
            append(text if reader is None else reader(text))
            at = end
        context.rows.append(row)
    if context.error is not None:
        raise context.error


def _unanswered_failed(statement: str, exc: BaseException) -> None:
    from shared.observability import get_logger

    get_logger().warning(
        "a statement sent unanswered failed", extra={"statement": statement[:200], "error": str(exc)[:500]}
    )


def pipeline_statements(connection: Any, prepared_statements: int | None = None) -> None:
    """Statements on this pg8000 connection (and its commits and rollbacks) take one round trip each, BEGIN
    none, and reads before a transaction's first write none either (at READ COMMITTED); each statement is
    parsed and planned by the server once per connection (the last `prepared_statements` kept, by default
    `PREPARED_STATEMENTS`; 0: none, every statement unnamed as before)."""
    if PIPELINED:
        connection.orch_prepared_limit = (
            PREPARED_STATEMENTS if prepared_statements is None else prepared_statements
        )
        # (text, parameter type oids) -> (name, columns, row readers), least recently used first
        connection.orch_prepared = collections.OrderedDict()
        connection.orch_names = itertools.count(1)  # never reused on this connection
        connection.orch_closing = []
        connection.orch_begin_pending = False
        connection.orch_unread = []  # contexts of statements sent unanswered (`answer_later`), in order
        connection.orch_answer_later = False
        connection.orch_reads_first = _isolation(connection) == READ_COMMITTED
        connection.execute_simple = types.MethodType(_execute_simple, connection)
        connection.execute_unnamed = types.MethodType(_execute_unnamed, connection)
        connection.handle_messages = types.MethodType(_handle_messages, connection)


def _isolation(connection: Any) -> str:
    """The session's isolation level (the server's `default_transaction_isolation` or the login's), asked
    once as the connection opens."""
    context = connection.execute_simple("SHOW transaction_isolation")
    rows = getattr(context, "rows", None) or [[""]]
    return " ".join(str(rows[0][0]).lower().split())


def _remembering(
    convert: Callable[[str, str, Any], tuple[str, Any]],
) -> Callable[[str, str, Any], tuple[str, Any]]:
    @functools.lru_cache(maxsize=CONVERTED_STATEMENTS)
    def converted(style: str, query: str) -> str:
        return convert(style, query, ())[0]

    def convert_paramstyle(style: str, query: str, args: Any) -> tuple[str, Any]:
        if style not in POSITIONAL_STYLES:  # named styles pick values by the names found in the text
            return convert(style, query, args)
        return converted(style, query), args

    convert_paramstyle.remembered = converted  # type: ignore[attr-defined]
    convert_paramstyle.original = convert  # type: ignore[attr-defined]
    return convert_paramstyle


def remember_converted_statements() -> None:
    """pg8000's cursors (both of its APIs) rewrite a statement text once, not on every execution."""
    from pg8000 import dbapi, legacy

    for module in (legacy, dbapi):
        current = getattr(module, "convert_paramstyle", None)
        if current is not None and not hasattr(current, "remembered"):
            module.convert_paramstyle = _remembering(current)
