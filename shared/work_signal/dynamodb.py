"""The AWS adapter: one DynamoDB item whose attributes are the standing marks.

`mark` is one UpdateItem (SET each kind to the later of its value and now), `marks` one strongly
consistent GetItem, `settle` one conditional UpdateItem (REMOVE if older than the cutoff). The API
in the VPC reaches DynamoDB through the free gateway endpoint; on-demand, an idle table costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from shared.work_signal.port import WorkKind, WorkSignalError, parse_marks, settle_before

PARTITION_KEY = "pk"
ITEM_KEY = "work"
ACTIONS = {
    "mark": ("dynamodb:UpdateItem",),
    "read": ("dynamodb:GetItem",),
    "settle": ("dynamodb:UpdateItem",),
}
"""What each method calls: the API is granted `mark`'s, the scheduler `read` and `settle`'s."""


class DynamoDbWorkSignal:
    backend = "dynamodb"

    def __init__(self, table: str, client: Any, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self._client = client
        self._clock = clock
        self._key = {PARTITION_KEY: {"S": ITEM_KEY}}

    def mark(self, kinds: Iterable[WorkKind]) -> None:
        names = sorted({WorkKind(kind).value for kind in kinds})
        if not names:
            return
        # a plain SET: a clock a little behind another writer's only moves a mark back by less than SETTLE_S
        assignments = ", ".join(f"#k{i} = :now" for i in range(len(names)))
        try:
            self._client.update_item(
                TableName=self.table,
                Key=self._key,
                UpdateExpression=f"SET {assignments}",
                ExpressionAttributeNames={f"#k{i}": name for i, name in enumerate(names)},
                ExpressionAttributeValues={":now": {"N": repr(float(self._clock()))}},
            )
        except Exception as exc:
            raise WorkSignalError(f"work signal table {self.table}: {_code(exc) or exc}") from exc

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
        return True


def _code(exc: Exception) -> str | None:
    """botocore's error code (ClientError.response), if the exception carries one."""
    code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
    return str(code) if code else None
