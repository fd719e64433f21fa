"""The fast pg8000 timestamp readers (functions/api/db.py) read what pg8000's own readers read."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pg8000 import converters

from functions.api.db import _fast_timestamp

fast_timestamptz = _fast_timestamp(converters.timestamptz_in)
fast_timestamp = _fast_timestamp(converters.timestamp_in)


def _pg_text(value: datetime, offset: str = "+00") -> str:
    """PostgreSQL's ISO output: microseconds only when non-zero, the shortest offset form."""
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + offset


def _sample(n: int = 500) -> list[datetime]:
    rng = random.Random(24)
    start = datetime(1, 1, 1)
    span = (datetime(9999, 12, 31) - start).total_seconds()
    return [
        start + timedelta(seconds=rng.uniform(0, span), microseconds=rng.choice((0, rng.randrange(10**6))))
        for _ in range(n)
    ]


@pytest.mark.parametrize("offset", ["+00", "+05:30", "-03", "+14", "-09:30"])
def test_timestamptz_equals_pg8000s_own_parse_on_a_sample(offset: str) -> None:
    for value in _sample():
        text = _pg_text(value, offset)
        ours = fast_timestamptz(text)
        assert ours == converters.timestamptz_in(text), text
        assert ours.utcoffset() == converters.timestamptz_in(text).utcoffset(), text


def test_timestamp_without_zone_equals_pg8000s_own_parse_on_a_sample() -> None:
    for value in _sample():
        text = _pg_text(value, "")
        ours = fast_timestamp(text)
        assert ours == converters.timestamp_in(text) and ours.tzinfo is None, text


def test_microseconds_and_time_zones_are_kept() -> None:
    assert fast_timestamptz("2024-02-29 23:59:59.000001+00") == datetime(
        2024, 2, 29, 23, 59, 59, 1, tzinfo=UTC
    )
    assert fast_timestamptz("2024-01-02 03:04:05.5+05:30") == datetime(
        2024, 1, 2, 3, 4, 5, 500000, tzinfo=timezone(timedelta(hours=5, minutes=30))
    )
    assert fast_timestamptz("2024-01-02 03:04:05.5+05:30").astimezone(UTC).hour == 21


def test_an_offset_with_seconds_is_read_where_pg8000_gives_up() -> None:
    # PostgreSQL prints local mean time offsets (zones before 1900) with seconds; pg8000 returns the text
    text = "1890-01-01 00:00:00+05:53:28"
    assert converters.timestamptz_in(text) == text
    assert fast_timestamptz(text) == datetime(1890, 1, 1, tzinfo=timezone(timedelta(seconds=21208)))


@pytest.mark.parametrize(
    "text",
    [
        "infinity",
        "-infinity",
        "0044-03-15 00:00:00+00 BC",
        "10000-01-01 00:00:00+00",
        "275760-09-13 00:00:00+00",
    ],
)
def test_what_fromisoformat_cannot_read_comes_back_as_pg8000_returns_it(text: str) -> None:
    assert fast_timestamptz(text) == converters.timestamptz_in(text)


@pytest.mark.filterwarnings("ignore::dateutil.parser.UnknownTimezoneWarning")
@pytest.mark.parametrize("text", ["infinity", "-infinity", "0044-03-15 00:00:00 BC"])
def test_timestamp_without_zone_falls_back_the_same(text: str) -> None:
    assert fast_timestamp(text) == converters.timestamp_in(text)
