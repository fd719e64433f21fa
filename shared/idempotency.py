"""Idempotency claims: "has anyone done this yet?" answered once, durably, across processes.

`claim(key, ttl_s)` is True for exactly one caller while the key's claim lives; everyone else
gets False until it expires. Used to drop duplicate Telegram updates (webhook retries, long
polling after a restart) and to send a stranger one refusal per cool-down.

Two real adapters, chosen by `ORCH_IDEMPOTENCY_BACKEND`:

- `local`: a SQLite file in ORCH_HOME (`idempotency.db`); `BEGIN IMMEDIATE` makes a claim
  atomic across threads and processes sharing the file.
- `dynamodb`: a conditional put on `ORCH_IDEMPOTENCY_TABLE` (partition key `pk` (S), TTL
  attribute `expires_at` (N, epoch seconds)). DynamoDB deletes expired items lazily (up to days
  later), so the condition also accepts an item whose `expires_at` has passed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import Field

from shared.settings import AwsSettings, HomeSettings

DYNAMODB_PARTITION_KEY = "pk"
DYNAMODB_TTL_ATTRIBUTE = "expires_at"
MAX_KEY_CHARS = 1024
"""DynamoDB allows 2048 bytes for a partition key; keys here are short ids with a prefix."""


class IdempotencyError(RuntimeError):
    """The claim store could not answer; the caller must not assume either outcome."""


@runtime_checkable
class IdempotencyPort(Protocol):
    backend: str

    def claim(self, key: str, ttl_s: int) -> bool:
        """True the first time `key` is claimed (or after its previous claim expired), else False."""
        ...

    def release(self, key: str) -> None:
        """Forget a claim, so the work can be tried again (the claimer failed before finishing)."""
        ...


def _check(key: str, ttl_s: int) -> None:
    if not key or len(key) > MAX_KEY_CHARS:
        raise ValueError(f"idempotency key must be 1..{MAX_KEY_CHARS} characters")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")


class SqliteIdempotency:
    """Claims in one SQLite file (WAL); safe for threads and for processes sharing the file."""

    backend = "local"

    def __init__(self, path: Path, clock: Any = time.time) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._local = threading.local()
        self._claims_since_purge = 0
        with self._connection() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, expires_at REAL NOT NULL)")
            conn.execute("CREATE INDEX IF NOT EXISTS claims_expiry ON claims (expires_at)")

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def claim(self, key: str, ttl_s: int) -> bool:
        _check(key, ttl_s)
        now = float(self._clock())
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM claims WHERE key = ? AND expires_at <= ?", (key, now))
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO claims (key, expires_at) VALUES (?, ?)", (key, now + ttl_s)
                )
                claimed = cursor.rowcount == 1
                self._claims_since_purge += 1
                if self._claims_since_purge >= 500:  # keep the file small without a janitor
                    conn.execute("DELETE FROM claims WHERE expires_at <= ?", (now,))
                    self._claims_since_purge = 0
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise IdempotencyError(f"claim store {self.path} failed: {exc}") from exc
        return claimed

    def release(self, key: str) -> None:
        try:
            self._connection().execute("DELETE FROM claims WHERE key = ?", (key,))
        except sqlite3.Error as exc:
            raise IdempotencyError(f"claim store {self.path} failed: {exc}") from exc

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class DynamoDbIdempotency:
    """Claims as items of a DynamoDB table written with a conditional put."""

    backend = "dynamodb"

    def __init__(self, table: str, client: Any, clock: Any = time.time) -> None:
        self.table = table
        self._client = client
        self._clock = clock

    def claim(self, key: str, ttl_s: int) -> bool:
        _check(key, ttl_s)
        now = int(self._clock())
        try:
            self._client.put_item(
                TableName=self.table,
                Item={
                    DYNAMODB_PARTITION_KEY: {"S": key},
                    DYNAMODB_TTL_ATTRIBUTE: {"N": str(now + ttl_s)},
                },
                ConditionExpression="attribute_not_exists(#pk) OR #exp <= :now",
                ExpressionAttributeNames={"#pk": DYNAMODB_PARTITION_KEY, "#exp": DYNAMODB_TTL_ATTRIBUTE},
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except Exception as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise IdempotencyError(f"claim table {self.table} failed: {_error_code(exc) or exc}") from exc
        return True

    def release(self, key: str) -> None:
        try:
            self._client.delete_item(TableName=self.table, Key={DYNAMODB_PARTITION_KEY: {"S": key}})
        except Exception as exc:
            raise IdempotencyError(f"claim table {self.table} failed: {_error_code(exc) or exc}") from exc


def _error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


class IdempotencySettings(HomeSettings, AwsSettings):
    idempotency_backend: Annotated[
        Literal["local", "dynamodb"], Field(description="local (SQLite in ORCH_HOME) or dynamodb (AWS).")
    ] = "local"
    idempotency_table: Annotated[
        str | None, Field(description="DynamoDB table (pk: S, TTL attribute expires_at).")
    ] = None
    idempotency_file: Annotated[
        Path | None, Field(description="Local claim store; default $ORCH_HOME/idempotency.db.")
    ] = None

    @property
    def effective_idempotency_file(self) -> Path:
        return (self.idempotency_file or self.home / "idempotency.db").expanduser()


def build_idempotency(settings: IdempotencySettings | None = None) -> IdempotencyPort:
    """The configured adapter; boto3 is imported only for DynamoDB."""
    settings = settings or IdempotencySettings()
    if settings.idempotency_backend == "dynamodb":
        if not settings.idempotency_table:
            raise ValueError("ORCH_IDEMPOTENCY_TABLE is required when ORCH_IDEMPOTENCY_BACKEND=dynamodb")
        import boto3

        client = boto3.client(
            "dynamodb", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url
        )
        return DynamoDbIdempotency(settings.idempotency_table, client)
    return SqliteIdempotency(settings.effective_idempotency_file)
