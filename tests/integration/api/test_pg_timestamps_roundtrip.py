"""The real PostgreSQL's timestamp output, read by the fast readers make_engine registers on pg8000."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pg8000 import converters
from sqlalchemy import text

from functions.api.db import make_engine

LITERALS = [
    "2024-02-29 23:59:59.000001+00",
    "2024-01-02 03:04:05.5+05:30",
    "1999-12-31 23:00:00-09:30",
    "0100-01-01 00:00:00+00",
    "infinity",
    "-infinity",
    "0044-03-15 12:00:00+00 BC",
]
ISO_INSTANTS = LITERALS[:4]


@pytest.mark.filterwarnings("ignore::dateutil.parser.UnknownTimezoneWarning")
@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/St_Johns"])
def test_timestamps_read_back_as_pg8000_reads_them(postgres_url: str, zone: str) -> None:
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f"SET TIME ZONE '{zone}'"))
            for literal in LITERALS:
                shown, fast = conn.execute(
                    text("SELECT CAST(:v AS timestamptz)::text, CAST(:v AS timestamptz)"), {"v": literal}
                ).one()
                if literal in ISO_INSTANTS:  # the same instant, in whatever zone the session shows it
                    assert fast == datetime.fromisoformat(literal), (zone, literal, shown)
                else:  # infinity, BC: exactly what pg8000 itself returns
                    assert fast == converters.timestamptz_in(shown), (zone, literal, shown)
                plain_shown, plain = conn.execute(
                    text(
                        "SELECT CAST(:v AS timestamptz)::timestamp::text, CAST(:v AS timestamptz)::timestamp"
                    ),
                    {"v": literal},
                ).one()
                assert plain == converters.timestamp_in(plain_shown), (zone, literal, plain_shown)
            now = conn.execute(
                text("SELECT CAST('2024-01-02 03:04:05.123456+00' AS timestamptz)")
            ).scalar_one()
    finally:
        engine.dispose()
    assert now == datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert now.astimezone(UTC).utcoffset() == timedelta(0) and isinstance(now.tzinfo, timezone)
