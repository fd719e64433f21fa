"""The AWS adapter: one DynamoDB item whose attributes are the standing marks, and one item per job snapshot.

`mark` is one UpdateItem (SET each kind to the later of its value and now), `marks` one strongly
consistent GetItem, `settle` one conditional UpdateItem (REMOVE if older than the cutoff).
`load_snapshot` is one strongly consistent GetItem of the item `snapshot#<name>` (its data a JSON string),
`save_snapshot` one conditional UpdateItem (unless a later read is stored): the same two actions. The API
in the VPC reaches DynamoDB through the free gateway endpoint; on-demand, an idle table costs nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from shared.work_signal.port import RecentMarks, WorkKind, WorkSignalError, parse_marks, settle_before

PARTITION_KEY = "pk"
ITEM_KEY = "work"
SNAPSHOT_KEY_PREFIX = "snapshot#"
ACTIONS = {
    "mark": ("dynamodb:UpdateItem",),
    "read": ("dynamodb:GetItem",),
    "settle": ("dynamodb:UpdateItem",),
    "load_snapshot": ("dynamodb:GetItem",),
    "save_snapshot": ("dynamodb:UpdateItem",),
}
"""What each method calls: the API is granted `mark`'s, the scheduler every other's."""
SCHEDULER_METHODS = ("read", "settle", "load_snapshot", "save_snapshot")


class DynamoDbWorkSignal:
    backend = "dynamodb"

    def __init__(self, table: str, client: Any, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self._client = client
        self._clock = clock
        self._key = {PARTITION_KEY: {"S": ITEM_KEY}}
        self._recent = RecentMarks()

    def mark(self, kinds: Iterable[WorkKind]) -> None:
        now = float(self._clock())
        due = self._recent.due(kinds, now)
        if not due:
            return
        names = [kind.value for kind in due]
        # a plain SET: a clock a little behind another writer's only moves a mark back by less than SETTLE_S
        assignments = ", ".join(f"#k{i} = :now" for i in range(len(names)))
        try:
            self._client.update_item(
                TableName=self.table,
                Key=self._key,
                UpdateExpression=f"SET {assignments}",
                ExpressionAttributeNames={f"#k{i}": name for i, name in enumerate(names)},
                ExpressionAttributeValues={":now": {"N": repr(now)}},
            )
        except Exception as exc:
            raise WorkSignalError(f"work signal table {self.table}: {_code(exc) or exc}") from exc
        self._recent.written(due, now)

    def marks(self) -> dict[WorkKind, float]:
        try:
            item = self._client.get_item(TableName=self.table, Key=self._key, ConsistentRead=True).get("Item")
        except Exception as exc:
            raise WorkSignalError(f"work signal table {self.table}: {_code(exc) or exc}") from exc
        raw = {name: float(value["N"]) for name, value in (item or {}).items() if "N" in value}
        return parse_marks(raw)

    def settle(self, kind: WorkKind, seen_at: float) -> bool:
        try:
            self._client.update_item(
                TableName=self.table,
                Key=self._key,
                UpdateExpression="REMOVE #k",
                ConditionExpression="#k < :cutoff",
                ExpressionAttributeNames={"#k": WorkKind(kind).value},
                ExpressionAttributeValues={":cutoff": {"N": repr(settle_before(seen_at))}},
            )
        except Exception as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise WorkSignalError(f"work signal table {self.table}: {_code(exc) or exc}") from exc
        self._recent.forget(kind)
        return True

    def load_snapshot(self, name: str) -> tuple[dict[str, Any], float] | None:
        try:
            item = self._client.get_item(
                TableName=self.table, Key=self._snapshot_key(name), ConsistentRead=True
            ).get("Item")
        except Exception as exc:
            raise WorkSignalError(f"work signal table {self.table}: {_code(exc) or exc}") from exc
        if not item:
            return None
        return json.loads(item["data"]["S"]), float(item["read_at"]["N"])

    def save_snapshot(self, name: str, data: Mapping[str, Any], read_at: float) -> bool:
        try:
            self._client.update_item(
                TableName=self.table,
                Key=self._snapshot_key(name),
                UpdateExpression="SET #data = :data, #read_at = :read_at",
                ConditionExpression="attribute_not_exists(#read_at) OR #read_at <= :read_at",
                ExpressionAttributeNames={"#data": "data", "#read_at": "read_at"},
                ExpressionAttributeValues={
                    ":data": {"S": json.dumps(dict(data))},
                    ":read_at": {"N": repr(float(read_at))},
                },
            )
        except Exception as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise WorkSignalError(f"work signal table {self.table}: {_code(exc) or exc}") from exc
        return True

    @staticmethod
    def _snapshot_key(name: str) -> dict[str, dict[str, str]]:
        return {PARTITION_KEY: {"S": SNAPSHOT_KEY_PREFIX + name}}


def _code(exc: Exception) -> str | None:
    """botocore's error code (ClientError.response), if the exception carries one."""
    code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
    return str(code) if code else None
