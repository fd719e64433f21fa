"""Cursor pagination shared by the listings: a cursor is the (created_at, id) of a page's last row."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from functions.api.errors import Unprocessable


class Keyed(Protocol):
    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> str: ...


RowT = TypeVar("RowT", bound=Keyed)


def page_of(rows: Sequence[RowT], limit: int) -> tuple[list[RowT], str | None]:
    """The first `limit` of `rows` (fetched with `limit + 1`) and the cursor of the next page, if any."""
    if len(rows) <= limit:
        return list(rows), None
    last = rows[limit - 1]
    return list(rows[:limit]), encode_cursor(last.created_at, last.id)


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) of the previous page's last row; a 422 naming `cursor` when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, row_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(created), str(row_id)
    except (ValueError, TypeError) as exc:
        raise Unprocessable("cursor is not valid: pass next_cursor from a previous page", ["cursor"]) from exc
